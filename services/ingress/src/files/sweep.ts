import { and, eq, inArray, isNotNull, lt, lte } from 'drizzle-orm';
import { files } from '@faregate/db/schema/files';
import type { IngressDeps } from '../deps.ts';
import { deleteFile, FILE_ID, fileStore } from './files.ts';

/** Files removed per query of a sweep (the next sweep takes the rest). */
const SWEEP_BATCH = 500;
/** An upload (or a batch's result file) still `uploading` this long after it began was cut short by a crash. */
export const STALE_UPLOAD_SECONDS = 3_600;

export interface SweepCounts {
  expired: number;
  stale: number;
  orphans: number;
}

/**
 * Housekeeping of the Files API, run by every ingress every FILES_SWEEP_MS (each step is idempotent,
 * so processes sweeping together only repeat each other's deletes):
 * - files past their `expires_at` (`expires_after` on upload, a batch's `output_expires_after`):
 *   gone for callers at once (the queries skip them), their record and bytes deleted here;
 * - records left `uploading` by a process that died mid-upload (or mid result file);
 * - bytes with no record: a crash between deleting a file's record and its bytes. A record is always
 *   written before its bytes (uploads and result files alike), so bytes without one are never a file
 *   being written; they are deleted only when two sweeps in a row found them so, and only if they
 *   have the shape of a file id (whatever else shares the store's prefix is not ours).
 */
export class FileSweeper {
  readonly #deps: IngressDeps;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<unknown> | undefined;
  /** Stored ids the last sweep found without a record. */
  #suspects = new Set<string>();

  constructor(deps: IngressDeps) {
    this.#deps = deps;
  }

  start(): void {
    const ms = this.#deps.config.FILES_SWEEP_MS;
    if (ms <= 0) return;
    this.#timer = setInterval(() => {
      if (this.#running) return;
      this.#running = this.sweep()
        .catch((err: unknown) => this.#deps.log.warn({ err }, 'file sweep failed'))
        .finally(() => {
          this.#running = undefined;
        });
    }, ms);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await this.#running;
  }

  async sweep(now = Math.floor(Date.now() / 1000)): Promise<SweepCounts> {
    const { db } = this.#deps;
    const expired = await db
      .select({ id: files.id })
      .from(files)
      .where(and(isNotNull(files.expiresAt), lte(files.expiresAt, now)))
      .limit(SWEEP_BATCH);
    const stale = await db
      .select({ id: files.id })
      .from(files)
      .where(and(eq(files.status, 'uploading'), lt(files.createdAt, now - STALE_UPLOAD_SECONDS)))
      .limit(SWEEP_BATCH);
    for (const { id } of [...expired, ...stale]) await deleteFile(this.#deps, id);
    const orphans = await this.#orphans();
    if (expired.length + stale.length + orphans > 0)
      this.#deps.log.info(
        { expired: expired.length, stale: stale.length, orphans },
        'file sweep removed files',
      );
    return { expired: expired.length, stale: stale.length, orphans };
  }

  /** Deletes bytes found without a record by this sweep and the last; how many. */
  async #orphans(): Promise<number> {
    const store = fileStore(this.#deps);
    const stored: string[] = [];
    // Only what has the shape of our ids: a bucket prefix shared with anything else is left alone.
    for await (const id of store.list()) if (FILE_ID.test(id)) stored.push(id);
    const suspects = new Set<string>();
    for (let i = 0; i < stored.length; i += SWEEP_BATCH) {
      const ids = stored.slice(i, i + SWEEP_BATCH);
      const rows = await this.#deps.db.select({ id: files.id }).from(files).where(inArray(files.id, ids));
      const known = new Set(rows.map((r) => r.id));
      for (const id of ids) if (!known.has(id)) suspects.add(id);
    }
    let removed = 0;
    for (const id of suspects)
      if (this.#suspects.has(id)) {
        await store.delete(id);
        suspects.delete(id);
        removed++;
      }
    this.#suspects = suspects;
    return removed;
  }
}
