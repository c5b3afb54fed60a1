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
 * which all keep the request id. A call is counted by the script that writes its usage event
 * (frame-store.append.lua), so a crash can neither count a call that is not billed nor bill one
 * that is not counted.
 */
export class HoldSpent extends GatewayError {}

export const holdCallsOf = (data: JobData): number => data.holdCalls ?? 1;

const callsKey = (deps: Pick<WorkerDeps, 'keys'>, requestId: string) => deps.keys.holdCalls(requestId);

/**
 * A call that produced tokens, as `FrameStore.append` counts it (`call`): pushed in the same script
 * as its usage event, so the count and the bill never disagree. Kept as long as the job's frames,
 * and at least until the request's deadline (no call after it).
 */
export function countedCall(data: JobData, line: string, ttlMs: number): { line: string; keepMs: number } {
  return { line, keepMs: Math.max(ttlMs, data.deadline - Date.now() + 60_000) };
}

/** The calls of this request counted so far. */
export function countedCalls(deps: Pick<WorkerDeps, 'redis' | 'keys'>, data: JobData): Promise<string[]> {
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
