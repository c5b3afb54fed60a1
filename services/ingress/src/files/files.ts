import { and, asc, desc, eq, gt, isNull, lt, or, type SQL, sql } from 'drizzle-orm';
import { GatewayError } from '@faregate/contracts/errors';
import type { FileObject } from '@faregate/contracts/openai-batches';
import { files } from '@faregate/db/schema/files';
import type { IngressDeps } from '../deps.ts';
import { S3FileStore } from './s3-store.ts';
import { type FileStore, PgFileStore } from './store.ts';

const stores = new WeakMap<IngressDeps, FileStore>();

/** The deployment's file store, as FILES_STORAGE says (one per deps). */
export function fileStore(deps: IngressDeps): FileStore {
  let s = stores.get(deps);
  if (!s) {
    const c = deps.config;
    s =
      c.FILES_STORAGE === 's3' && c.S3_BUCKET
        ? new S3FileStore({
            bucket: c.S3_BUCKET,
            prefix: c.S3_PREFIX,
            region: c.S3_REGION ?? c.AWS_REGION ?? 'us-east-1',
            ...(c.S3_ENDPOINT ? { endpoint: c.S3_ENDPOINT } : {}),
            forcePathStyle: c.S3_FORCE_PATH_STYLE,
            ...(c.AWS_ACCESS_KEY_ID && c.AWS_SECRET_ACCESS_KEY
              ? {
                  credentials: {
                    accessKeyId: c.AWS_ACCESS_KEY_ID,
                    secretAccessKey: c.AWS_SECRET_ACCESS_KEY,
                    ...(c.AWS_SESSION_TOKEN ? { sessionToken: c.AWS_SESSION_TOKEN } : {}),
                  },
                }
              : {}),
          })
        : new PgFileStore(deps.db.$client);
    stores.set(deps, s);
  }
  return s;
}

export type FileRow = typeof files.$inferSelect;

export const fileView = (f: FileRow): FileObject => ({
  id: f.id,
  object: 'file',
  bytes: f.bytes,
  created_at: f.createdAt,
  expires_at: f.expiresAt,
  filename: f.filename,
  purpose: f.purpose,
  status: 'processed',
  status_details: null,
});

/** `param`: what named the file (`id` in a path, `input_file_id` in a batch's body). */
export const fileNotFound = (id: string, param = 'id') =>
  new GatewayError({ code: 'not_found', message: `No such File object: ${id}`, param });

/** The shape of every file id the gateway makes (uploads and batch results). */
export const FILE_ID = /^file_[A-Za-z0-9_-]{10,80}$/;

/** Files still there: not expired (an expired file is gone for callers at once; the sweep removes it). */
const live = () => or(isNull(files.expiresAt), gt(files.expiresAt, Math.floor(Date.now() / 1000)));

/** The account's uploaded (complete) file, or undefined: another tenant's file, or an expired one, does not exist. */
export async function ownedFile(
  deps: IngressDeps,
  accountId: string,
  id: string,
): Promise<FileRow | undefined> {
  if (!FILE_ID.test(id)) return undefined;
  const [row] = await deps.db
    .select()
    .from(files)
    .where(and(eq(files.id, id), eq(files.accountId, accountId), eq(files.status, 'processed'), live()));
  return row;
}

/** The account's files, newest first (or oldest with `order: 'asc'`), after the cursor file. */
export async function listFiles(
  deps: IngressDeps,
  accountId: string,
  q: { after?: string; limit: number; order: 'asc' | 'desc'; purpose?: string },
): Promise<{ data: FileRow[]; hasMore: boolean }> {
  const where: SQL[] = [eq(files.accountId, accountId), eq(files.status, 'processed')];
  const notExpired = live();
  if (notExpired) where.push(notExpired);
  if (q.purpose) where.push(eq(files.purpose, q.purpose));
  if (q.after) {
    const cursor = await ownedFile(deps, accountId, q.after);
    if (!cursor) throw fileNotFound(q.after, 'after');
    where.push(q.order === 'desc' ? lt(files.seq, cursor.seq) : gt(files.seq, cursor.seq));
  }
  const order = q.order === 'desc' ? desc(files.seq) : asc(files.seq);
  const rows = await deps.db
    .select()
    .from(files)
    .where(and(...where))
    .orderBy(order)
    .limit(q.limit + 1);
  return { data: rows.slice(0, q.limit), hasMore: rows.length > q.limit };
}

/** A file about to be written: its record's fields (the id is the caller's, so it can clean up). */
export interface NewFile {
  id: string;
  accountId: string;
  purpose: FileRow['purpose'];
  filename: string;
}

/**
 * Writes a file's record and bytes, as every file (an upload, a batch's result file) is written: the
 * record first, `uploading` (listed nowhere), so bytes in the store always have a record and the
 * sweep (sweep.ts) takes bytes without one, and records left `uploading`, for what a crash left
 * behind. Then the bytes. The record becomes `processed`, with its size and expiry, by `finishFile`.
 */
export async function writeFile(deps: IngressDeps, f: NewFile, bytes: AsyncIterable<Buffer>): Promise<void> {
  await deps.db.insert(files).values({
    id: f.id,
    accountId: f.accountId,
    purpose: f.purpose,
    filename: f.filename.slice(0, 255),
    status: 'uploading',
    createdAt: Math.floor(Date.now() / 1000),
  });
  await fileStore(deps).put(f.id, bytes);
}

/**
 * Makes a written file visible (`processed`) with its size; `expiresAfter` (seconds from its
 * creation) sets its expiry. The record as it is now, or undefined when it was deleted meanwhile.
 */
export async function finishFile(
  deps: IngressDeps,
  id: string,
  size: { bytes: number; lines: number },
  expiresAfter?: number,
): Promise<FileRow | undefined> {
  const [row] = await deps.db
    .update(files)
    .set({
      status: 'processed',
      bytes: size.bytes,
      lines: size.lines,
      ...(expiresAfter === undefined ? {} : { expiresAt: sql`${files.createdAt} + ${expiresAfter}` }),
    })
    .where(eq(files.id, id))
    .returning();
  return row;
}

/** Removes a file's bytes and record. */
export async function deleteFile(deps: IngressDeps, id: string): Promise<void> {
  // The row first: from then on the file is gone for everyone, and a batch validating it while its
  // content goes sees that it was deleted (driver.ts) rather than taking what it read for the whole.
  await deps.db.delete(files).where(eq(files.id, id));
  await fileStore(deps).delete(id);
}
