import { and, desc, eq, inArray, like, lt, type SQL } from 'drizzle-orm';
import { GatewayError } from '@faregate/contracts/errors';
import { newId } from '@faregate/contracts/ids';
import {
  type BatchCreate,
  BatchErrors,
  type BatchObject,
  type BatchPrincipal,
  BatchStatus,
} from '@faregate/contracts/openai-batches';
import { batches } from '@faregate/db/schema/batches';
import { requestCancel } from '@faregate/queue/job-control';
import { z } from 'zod';
import type { IngressDeps } from '../deps.ts';
import { fileNotFound, ownedFile } from '../files/files.ts';
import type { Principal } from '../plugins/auth.ts';
import { requireScope } from '../plugins/auth.ts';

export type BatchRow = typeof batches.$inferSelect;

/** Statuses a driver still has work in. */
export const ACTIVE = ['validating', 'in_progress', 'finalizing', 'cancelling'] as const;

const Metadata = z.record(z.string(), z.string()).nullable();
const nowS = () => Math.floor(Date.now() / 1000);

/**
 * Job batches (`POST /v1/jobs` with `requests`, `jbat_…` ids) are batches of this engine too, with
 * no input file and no result files: their lines are seen as jobs (`/v1/jobs/{id}`, WebSocket).
 */
export const isJobBatch = (batchId: string) => batchId.startsWith('jbat_');

/** The batch id without its prefix (`batch_` or `jbat_`): what derived ids are made of. */
export const batchTail = (batchId: string) => batchId.slice(batchId.indexOf('_') + 1);

/** Ids derived from the batch id: a line's job id (the same after any crash), its output line id, result files. */
export const lineIds = (batchId: string, line: number) => {
  const tail = batchTail(batchId);
  return { job: `req_${tail}_${line}`, out: `batch_req_${tail}_${line}` };
};
export const resultFileId = (batchId: string, kind: 'output' | 'error') =>
  `file_${batchTail(batchId)}-${kind}`;

/** What the submitting key may do, kept with the batch for its lines. */
export const keptPrincipal = (principal: Principal): BatchPrincipal => ({
  accountId: principal.accountId,
  keyId: principal.keyId,
  scopes: principal.scopes,
  allowedModels: principal.allowedModels,
  ...(principal.limits ? { limits: principal.limits } : {}),
});

/** OpenAI's batch object. */
export function batchView(b: BatchRow): BatchObject {
  const errors = BatchErrors.safeParse(b.errors);
  const metadata = Metadata.safeParse(b.metadata ?? null);
  return {
    id: b.id,
    object: 'batch',
    endpoint: b.endpoint,
    // Known once the input file is validated: absent before, as OpenAI's SDKs type it (not null).
    ...(b.model === null ? {} : { model: b.model }),
    errors: errors.success && errors.data.length > 0 ? { object: 'list', data: errors.data } : null,
    input_file_id: b.inputFileId,
    completion_window: b.completionWindow,
    status: BatchStatus.parse(b.status),
    output_file_id: b.outputFileId,
    error_file_id: b.errorFileId,
    created_at: b.createdAt,
    in_progress_at: b.inProgressAt,
    expires_at: b.expiresAt,
    finalizing_at: b.finalizingAt,
    completed_at: b.completedAt,
    failed_at: b.failedAt,
    expired_at: b.expiredAt,
    cancelling_at: b.cancellingAt,
    cancelled_at: b.cancelledAt,
    request_counts: { total: b.total, completed: b.completed, failed: b.failed },
    metadata: metadata.success ? metadata.data : null,
    // The lines that ended with an answer so far (zeros until one has): summed by the driver as it
    // records them, in the transaction that counts them.
    usage: {
      input_tokens: b.inputTokens,
      input_tokens_details: { cached_tokens: b.cachedTokens },
      output_tokens: b.outputTokens,
      output_tokens_details: { reasoning_tokens: b.reasoningTokens },
      total_tokens: b.totalTokens,
    },
  };
}

export const batchNotFound = (id: string, param = 'id') =>
  new GatewayError({ code: 'not_found', message: `No batch found with id '${id}'.`, param });

const BATCH_ID = /^batch_[A-Za-z0-9_-]{10,64}$/;

/** The account's batch, or undefined: another tenant's batch does not exist. */
export async function ownedBatch(
  deps: IngressDeps,
  accountId: string,
  id: string,
): Promise<BatchRow | undefined> {
  if (!BATCH_ID.test(id)) return undefined;
  const [row] = await deps.db
    .select()
    .from(batches)
    .where(and(eq(batches.id, id), eq(batches.accountId, accountId)));
  return row;
}

/** A new OpenAI batch's id (`batch_…`): what an Idempotency-Key names before the create too. */
export const newBatchId = (): string => newId('batch', 12);

/** Records a batch in `validating`; a driver validates its file and runs it. */
export async function createBatch(
  deps: IngressDeps,
  principal: Principal,
  body: BatchCreate,
  /** Called with the batch's id before it is created (an Idempotency-Key's record names it). */
  beforeCreate?: (made: { id: string; created: number }) => Promise<void>,
  /**
   * The id an Idempotency-Key named (idempotency.ts): when a batch of this tenant has it already (the
   * key's first create, whose record Redis lost), that batch is the answer, and nothing is created.
   */
  chosenId?: string,
): Promise<BatchRow> {
  requireScope(principal, 'chat');
  if (chosenId) {
    // Whatever became of its input file since.
    const made = await ownedBatch(deps, principal.accountId, chosenId);
    if (made) {
      await beforeCreate?.({ id: made.id, created: made.createdAt * 1000 });
      return made;
    }
  }
  const file = await ownedFile(deps, principal.accountId, body.input_file_id);
  if (!file) throw fileNotFound(body.input_file_id, 'input_file_id');
  if (file.purpose !== 'batch')
    throw new GatewayError({
      code: 'invalid_request_error',
      message: `File ${file.id} has purpose '${file.purpose}': a batch input file has purpose 'batch'.`,
      param: 'input_file_id',
    });
  const created = nowS();
  const kept = keptPrincipal(principal);
  const id = chosenId ?? newBatchId();
  await beforeCreate?.({ id, created: created * 1000 });
  const [row] = await deps.db
    .insert(batches)
    .values({
      id,
      accountId: principal.accountId,
      keyId: principal.keyId,
      principal: kept,
      endpoint: body.endpoint,
      inputFileId: file.id,
      completionWindow: body.completion_window,
      metadata: body.metadata ?? null,
      outputExpiresAfter: body.output_expires_after?.seconds ?? null,
      status: 'validating',
      createdAt: created,
      expiresAt: created + deps.config.BATCH_WINDOW_SECONDS,
    })
    .returning();
  if (!row) throw new GatewayError({ code: 'internal_error', message: 'batch not recorded' });
  return row;
}

/** The account's batches, newest first, after the cursor batch. */
export async function listBatches(
  deps: IngressDeps,
  accountId: string,
  q: { after?: string; limit: number },
): Promise<{ data: BatchRow[]; hasMore: boolean }> {
  // Job batches are listed as jobs, not here.
  const where: SQL[] = [eq(batches.accountId, accountId), like(batches.id, 'batch\\_%')];
  if (q.after) {
    const cursor = await ownedBatch(deps, accountId, q.after);
    if (!cursor) throw batchNotFound(q.after, 'after');
    where.push(lt(batches.seq, cursor.seq));
  }
  const rows = await deps.db
    .select()
    .from(batches)
    .where(and(...where))
    .orderBy(desc(batches.seq))
    .limit(q.limit + 1);
  return { data: rows.slice(0, q.limit), hasMore: rows.length > q.limit };
}

/**
 * Every line of a cancelled batch fed to a pool and not ended is refused its start: a worker that
 * takes it from its queue later ends it without a call (the cancel channel's `unstarted`, which
 * workers remember before they see the job), one under way goes on. Until the driver's next step
 * acted on the cancel, queued lines went on starting as worker slots freed (a 300-line batch started
 * ~90 calls after its cancel was answered). The driver's feed picks lines only while the batch is
 * `in_progress`, under a lock the cancel's update waits for, so no line is fed after this read.
 */
async function refuseStarts(deps: IngressDeps, batchId: string): Promise<void> {
  const fed = await deps.db.$client.query<{ job_id: string }>(
    `SELECT job_id FROM batch_lines WHERE batch_id = $1 AND state = 'submitted' AND job_id IS NOT NULL`,
    [batchId],
  );
  const ttlMs = deps.config.STREAM_TTL_SECONDS * 1000;
  await Promise.all(
    fed.rows.map((r) => requestCancel(deps.redis, deps.keys, r.job_id, ttlMs, { unstarted: true })),
  );
}

/**
 * Asks the batch to stop: `cancelling` at once, and before the answer no line fed to a pool may start
 * any more (`refuseStarts`); lines whose provider call is under way finish. The driver then ends the
 * lines not started, and the batch `cancelled` with what finished. A batch already cancelling or
 * cancelled is answered as it is (a retried cancel succeeds); one that has finished otherwise
 * (`finalizing`, `completed`, `failed`, `expired`) has nothing left to stop: 409, as OpenAI answers.
 */
export async function cancelBatch(deps: IngressDeps, b: BatchRow): Promise<BatchRow> {
  const [row] = await deps.db
    .update(batches)
    .set({ status: 'cancelling', cancellingAt: nowS() })
    .where(and(eq(batches.id, b.id), inArray(batches.status, ['validating', 'in_progress'])))
    .returning();
  if (row) {
    await refuseStarts(deps, row.id);
    return row;
  }
  const [now] = await deps.db.select().from(batches).where(eq(batches.id, b.id));
  const current = now ?? b;
  // A retried cancel refuses the starts again: the first may have failed after its update.
  if (current.status === 'cancelling') await refuseStarts(deps, current.id);
  if (current.status === 'cancelling' || current.status === 'cancelled') return current;
  throw new GatewayError({
    code: 'conflict',
    message: `Cannot cancel a batch with status '${current.status}'.`,
  });
}
