import { GatewayError } from '@faregate/contracts/errors';
import type { JobData } from '@faregate/contracts/jobs';
import type { WorkerDeps } from './deps.ts';

/**
 * The retry budget a request's hold covers.
 *
 * Rule: the ingress holds `holdCalls × (the most one provider call may cost)` and puts `holdCalls`
 * on the job (absent: 1). Every call of the request that produced tokens is billed, wherever it ran
 * (the fast lane, a BullMQ retry, a fallback hop), so once `holdCalls` calls have produced tokens
 * the worker starts no further call: the job fails with `HoldSpent` instead of retrying or falling
 * back, and settlement never exceeds the hold. Calls that failed before producing tokens (5xx, 429,
 * connect errors, a circuit that is open) cost nothing and do not count.
 *
 * The count is a per-request Redis list (one line per counted call, for the error message) under the
 * request's hash tag: it outlives BullMQ retries, the hand-over from the fast lane and fallback hops,
 * which all keep the request id. A call is counted before its usage event is written, so a crash
 * between the two over-counts (one call fewer is allowed) and never under-counts (one call more than
 * the hold would be billed).
 */
export class HoldSpent extends GatewayError {}

export const holdCallsOf = (data: JobData): number => data.holdCalls ?? 1;

const callsKey = (deps: WorkerDeps, requestId: string) => deps.keys.holdCalls(requestId);

/** Counts a call that produced tokens; returns every call counted so far (this one last). */
export async function countCall(
  deps: WorkerDeps,
  data: JobData,
  line: string,
  ttlMs: number,
): Promise<string[]> {
  const key = callsKey(deps, data.id);
  // Kept as long as the job's frames, and at least until the request's deadline (no call after it).
  const keepMs = Math.max(ttlMs, data.deadline - Date.now() + 60_000);
  const res = await deps.redis.multi().rpush(key, line).pexpire(key, keepMs).lrange(key, 0, -1).exec();
  const failed = res?.find(([err]) => err);
  if (!res || failed) throw failed?.[0] ?? new Error('counting the call failed (transaction aborted)');
  return res[2]?.[1] as string[];
}

/** The calls of this request counted so far. */
export function countedCalls(deps: WorkerDeps, data: JobData): Promise<string[]> {
  return deps.redis.lrange(callsKey(deps, data.id), 0, -1);
}

/** One counted call, as the error message names it. */
export function describeCall(
  candidate: { provider: string; model: string },
  hop: number,
  attempt: number,
  err: GatewayError,
): string {
  return `${candidate.provider}/${candidate.model} (hop ${hop}, attempt ${attempt}): ${err.code} (${err.message})`;
}

/** The request's failure once its hold covers no further call. */
export function holdSpent(data: JobData, calls: string[]): HoldSpent {
  const n = holdCallsOf(data);
  return new HoldSpent({
    code: 'upstream_error',
    message:
      `The retry budget covered by the request's hold is spent: ${calls.length} provider call` +
      `${calls.length === 1 ? '' : 's'} already produced billable tokens and the hold covers ${n}, ` +
      `so the gateway neither retries nor falls back. Attempts: ${calls.join('; ')}`,
    retryable: false,
  });
}
