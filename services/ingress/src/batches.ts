import { and, eq } from 'drizzle-orm';
import { GatewayError } from '@faregate/contracts/errors';
import { newId } from '@faregate/contracts/ids';
import type { JobMeta } from '@faregate/contracts/job-control';
import { batches } from '@faregate/db/schema/batches';
import { readJobStates } from '@faregate/queue/job-control';
import type { IngressDeps } from './deps.ts';
import { type BatchRow, keptPrincipal, lineIds } from './openai-batches/batches.ts';
import { batchDriverOf } from './openai-batches/driver.ts';
import type { Principal } from './plugins/auth.ts';
import { requireScope } from './plugins/auth.ts';
import { ownedJob, parseChatRequest } from './submit.ts';
import { UNSTORABLE, unstorable } from './openai-batches/validate.ts';
import { asGatewayError } from './plugins/errors.ts';

/**
 * Job batches (`POST /v1/jobs` with `{ "requests": [ … ] }`): the small, job-shaped form of the one
 * batch engine (openai-batches/). A job batch is a batch row (`jbat_…`) whose lines are the valid
 * requests, run by the same driver as a Batch API batch: fed gradually as ordinary async jobs at batch
 * priority (fair, bounded in flight), each admitted, routed, retried and billed on its own, recovered
 * after crashes. Each member's job id is derived from the batch and its index, so it is known at once
 * and looked up and followed as any job; there is no input or result file.
 */

/** Most requests one job batch may carry (larger batches belong to the Batch API). */
export const MAX_BATCH = 1000;

export type BatchEntry =
  | { index: number; id: string }
  | { index: number; error: ReturnType<GatewayError['toBody']>['error'] };

const JOB_BATCH_ID = /^jbat_[A-Za-z0-9_-]{10,64}$/;

/**
 * Records a job batch: each request is validated (its body, its model's route) on its own and a bad
 * one is reported at its index; the others become the batch's lines, which the driver runs. Admission
 * (budget, the key's limits and models) happens as each line is fed: a refused line is a failed job.
 */
export async function submitBatch(
  deps: IngressDeps,
  principal: Principal,
  requests: unknown[],
  /** Called with the batch's id before it is created (an Idempotency-Key's record names it). */
  beforeCreate?: (made: { id: string; created: number }) => Promise<void>,
): Promise<{ id: string; created: number; entries: BatchEntry[] }> {
  if (requests.length === 0 || requests.length > MAX_BATCH) {
    throw new GatewayError({
      code: 'invalid_request_error',
      message: `'requests' must hold between 1 and ${MAX_BATCH} chat requests.`,
      param: 'requests',
    });
  }
  requireScope(principal, 'chat');
  const id = newId('jbat', 12);
  const created = Date.now();
  const entries: BatchEntry[] = [];
  const valid: { line: number; body: unknown; job: string }[] = [];
  for (const [index, body] of requests.entries()) {
    try {
      deps.router.plan(parseChatRequest(body));
      // What Postgres cannot store refuses this member, at its index, not the whole batch.
      const cannot = unstorable(JSON.stringify(body));
      if (cannot)
        throw new GatewayError({
          code: 'invalid_request_error',
          message: `This request ${UNSTORABLE[cannot]}`,
        });
      const job = lineIds(id, index).job;
      valid.push({ line: index, body, job });
      entries.push({ index, id: job });
    } catch (e) {
      const ge = asGatewayError(e);
      entries.push({ index, error: ge.toBody().error });
    }
  }
  await beforeCreate?.({ id, created });
  const client = await deps.db.$client.connect();
  try {
    await client.query('BEGIN');
    await client.query(
      `INSERT INTO batches (id, account_id, key_id, principal, endpoint, input_file_id, completion_window,
         metadata, status, total, created_at, in_progress_at, expires_at)
       VALUES ($1, $2, $3, $4, '/v1/chat/completions', '', '24h', $5, $6, $7, $8, $8, $9)`,
      [
        id,
        principal.accountId,
        principal.keyId,
        JSON.stringify(keptPrincipal(principal)),
        JSON.stringify({ requests: String(requests.length) }),
        // With no valid request there is nothing to run: the batch is done at once.
        valid.length > 0 ? 'in_progress' : 'completed',
        valid.length,
        Math.floor(created / 1000),
        Math.floor(created / 1000) + deps.config.BATCH_WINDOW_SECONDS,
      ],
    );
    if (valid.length > 0)
      await client.query(
        `INSERT INTO batch_lines (batch_id, line, custom_id, body, state, job_id)
         SELECT $1, l, l::text, b::jsonb, 'pending', j FROM unnest($2::int[], $3::text[], $4::text[]) AS t(l, b, j)`,
        [id, valid.map((v) => v.line), valid.map((v) => JSON.stringify(v.body)), valid.map((v) => v.job)],
      );
    await client.query('COMMIT');
  } catch (e) {
    await client.query('ROLLBACK').catch(() => {});
    throw e;
  } finally {
    client.release();
  }
  batchDriverOf(deps)?.kick();
  return { id, created, entries };
}

async function jobBatchRow(deps: IngressDeps, accountId: string, id: string): Promise<BatchRow | undefined> {
  if (!JOB_BATCH_ID.test(id)) return undefined;
  const [row] = await deps.db
    .select()
    .from(batches)
    .where(and(eq(batches.id, id), eq(batches.accountId, accountId)));
  return row;
}

/** The batch's job ids (by index; '' for a request that was refused) if it belongs to this account. */
export async function ownedBatch(
  deps: IngressDeps,
  principal: Principal,
  id: string,
): Promise<{ created: number; jobs: string[]; row: BatchRow } | undefined> {
  const row = await jobBatchRow(deps, principal.accountId, id);
  if (!row) return undefined;
  const meta = row.metadata as { requests?: string } | null;
  const jobs: string[] = Array.from({ length: Number(meta?.requests ?? row.total) }, () => '');
  const lines = await deps.db.$client.query<{ line: number }>(
    'SELECT line FROM batch_lines WHERE batch_id = $1',
    [id],
  );
  for (const { line } of lines.rows) jobs[line] = lineIds(id, line).job;
  return { created: row.createdAt * 1000, jobs, row };
}

/**
 * Each member job's state ('rejected' for a refused request; 'queued' for one not fed yet, whose job
 * has no record so far; 'expired' once an ended job's record is gone), and the counts by state.
 */
export async function batchStatus(deps: IngressDeps, jobs: string[], ended?: Map<string, string>) {
  const members = jobs.filter(Boolean);
  const found = await readJobStates(deps.redis, deps.keys, members);
  const counts: Record<string, number> & { queued: number; running: number } = {
    queued: 0,
    running: 0,
    completed: 0,
    failed: 0,
    cancelled: 0,
    rejected: 0,
  };
  let k = 0;
  const states = jobs.map((j) => (j ? (found[k++] ?? ended?.get(j) ?? 'queued') : 'rejected'));
  for (const s of states) counts[s] = (counts[s] ?? 0) + 1;
  return { states, counts };
}

/** Lines that ended with no job record left (expired records, or the batch's window ran out). */
export async function endedLines(deps: IngressDeps, batchId: string): Promise<Map<string, string>> {
  const r = await deps.db.$client.query<{ line: number; state: string }>(
    `SELECT line, state FROM batch_lines WHERE batch_id = $1 AND state NOT IN ('pending', 'submitted')`,
    [batchId],
  );
  return new Map(r.rows.map((x) => [lineIds(batchId, x.line).job, x.state]));
}

/**
 * A member of a job batch not fed yet has no job record: it is `queued` (so it can be looked up,
 * subscribed to and cancelled at once, like any job just submitted).
 */
export async function pendingMember(
  deps: IngressDeps,
  principal: Principal,
  jobId: string,
): Promise<JobMeta | undefined> {
  const m = /^req_([A-Za-z0-9_-]{10,64})_(\d{1,4})$/.exec(jobId);
  if (!m) return undefined;
  const row = await jobBatchRow(deps, principal.accountId, `jbat_${m[1]}`);
  if (!row) return undefined;
  const r = await deps.db.$client.query<{ model: string | null; state: string }>(
    `SELECT body->>'model' AS model, state FROM batch_lines WHERE batch_id = $1 AND line = $2`,
    [row.id, Number(m[2])],
  );
  const line = r.rows[0];
  // Not fed yet, or fed and its job about to be recorded.
  if (!line || (line.state !== 'pending' && line.state !== 'submitted')) return undefined;
  return {
    account: row.accountId,
    state: 'queued',
    model: line.model ?? '',
    created: row.createdAt * 1000,
    cancel: false,
  };
}

/**
 * A job the tenant may see: its record, or a job batch's member not fed yet (`queued`, no record so
 * far). Its id is known from the moment the batch is accepted, on every route and WebSocket op.
 */
export async function findJob(
  deps: IngressDeps,
  principal: Principal,
  id: string,
): Promise<JobMeta | undefined> {
  return (await ownedJob(deps, principal, id)) ?? (await pendingMember(deps, principal, id));
}

export const notFoundBatch = (id: string) =>
  new GatewayError({ code: 'not_found', message: `No job batch found with id '${id}'.`, param: 'id' });
