import { GatewayError } from '@faregate/contracts/errors';
import { newId } from '@faregate/contracts/ids';
import { readJobStates } from '@faregate/queue/job-control';
import type { IngressDeps } from './deps.ts';
import type { Principal } from './plugins/auth.ts';
import { parseChatRequest, submitChat } from './submit.ts';

/** Most requests one batch may carry (each is its own job, admitted and billed on its own). */
export const MAX_BATCH = 1000;
const SUBMIT_CONCURRENCY = 16;

export type BatchEntry =
  | { index: number; id: string }
  | { index: number; error: ReturnType<GatewayError['toBody']>['error'] };

const batchKey = (deps: IngressDeps, id: string) => deps.keys.batch(id);
const jobsKey = (deps: IngressDeps, id: string) => deps.keys.batchJobs(id);

/**
 * A job batch: many chat requests submitted together, each its own job (admission, routing,
 * retries and billing per job), grouped under one id that can be polled and subscribed to.
 * A request that fails validation or admission is reported at its index; the others run.
 */
export async function submitBatch(
  deps: IngressDeps,
  principal: Principal,
  requests: unknown[],
): Promise<{ id: string; created: number; entries: BatchEntry[] }> {
  if (requests.length === 0 || requests.length > MAX_BATCH) {
    throw new GatewayError({
      code: 'invalid_request_error',
      message: `'requests' must hold between 1 and ${MAX_BATCH} chat requests.`,
      param: 'requests',
    });
  }
  const id = newId('jbat');
  const created = Date.now();
  const entries: BatchEntry[] = new Array(requests.length);
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < requests.length; i = next++) {
      try {
        const body = parseChatRequest(requests[i]);
        const data = await submitChat(deps, principal, body, 'async');
        entries[i] = { index: i, id: data.id };
      } catch (e) {
        const ge =
          e instanceof GatewayError
            ? e
            : new GatewayError({ code: 'internal_error', message: 'internal error' });
        entries[i] = { index: i, error: ge.toBody().error };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(SUBMIT_CONCURRENCY, requests.length) }, worker));
  const ttlMs = deps.config.STREAM_TTL_SECONDS * 1000;
  const m = deps.redis
    .multi()
    .hset(
      batchKey(deps, id),
      'account',
      principal.accountId,
      'created',
      String(created),
      'total',
      String(requests.length),
    )
    .pexpire(batchKey(deps, id), ttlMs);
  // Rejected entries keep their place as '' so indexes line up.
  m.rpush(jobsKey(deps, id), ...entries.map((e) => ('id' in e ? e.id : ''))).pexpire(
    jobsKey(deps, id),
    ttlMs,
  );
  await m.exec();
  return { id, created, entries };
}

/** The batch's job ids (by index; '' for a request that was refused) if it belongs to this account. */
export async function ownedBatch(
  deps: IngressDeps,
  principal: Principal,
  id: string,
): Promise<{ created: number; jobs: string[] } | undefined> {
  if (!/^jbat_[A-Za-z0-9_-]{10,64}$/.test(id)) return undefined;
  const [meta, jobs] = await Promise.all([
    deps.redis.hgetall(batchKey(deps, id)),
    deps.redis.lrange(jobsKey(deps, id), 0, -1),
  ]);
  if (meta.account !== principal.accountId) return undefined;
  return { created: Number(meta.created), jobs };
}

/** Each member job's state ('rejected' for a refused request, 'expired' once its record is gone), and the counts by state. */
export async function batchStatus(deps: IngressDeps, jobs: string[]) {
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
  const states = jobs.map((j) => (j ? (found[k++] ?? 'expired') : 'rejected'));
  for (const s of states) counts[s] = (counts[s] ?? 0) + 1;
  return { states, counts };
}

export const notFoundBatch = (id: string) =>
  new GatewayError({ code: 'not_found', message: `No job batch found with id '${id}'.`, param: 'id' });
