import { GatewayError } from '@faregate/contracts/errors';
import type { JobData } from '@faregate/contracts/jobs';
import { RouteStep } from '@faregate/contracts/route';
import type { WorkerDeps } from './deps.ts';

/**
 * The retry budget a request's hold covers.
 *
 * Rule: the ingress holds `holdCalls × callMicros` (the most one provider call may cost) and puts
 * both on the job. Every call of the request that produced tokens is billed, wherever it ran (the
 * fast lane, a BullMQ retry, a fallback hop), so once what those calls cost leaves less than
 * `callMicros` of the hold (`holdIsSpent`) the worker starts no further call: the job fails with
 * `HoldSpent` instead of retrying or falling back, and settlement never exceeds the hold. Calls that failed before producing tokens (5xx, 429,
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

/**
 * Whether the hold has no room for another call after `counted`. By money when the job says what
 * one call may cost at most (`callMicros`): another call is started while the calls so far leave at
 * least that much of the hold, so calls that cost little (a prompt read, then the stream cut) do not
 * use up a fallback. Otherwise by count: `holdCalls` calls that produced tokens.
 */
export function holdIsSpent(data: JobData, counted: CountedCall[]): boolean {
  if (data.callMicros === undefined) return counted.length >= holdCallsOf(data);
  const perCall = BigInt(data.callMicros);
  const spent = counted.reduce((sum, c) => sum + c.costMicros, 0n);
  return perCall * BigInt(holdCallsOf(data)) - spent < perCall;
}

/** A call counted against the hold: how the error message names it, and what it cost (µUSD). */
export interface CountedCall {
  description: string;
  costMicros: bigint;
}

/** A counted call as stored (one list line, JSON). */
export function countedLine(c: CountedCall): string {
  return JSON.stringify({ d: c.description, c: c.costMicros.toString() });
}

/** A stored line; an unreadable one still counts (its cost unknown: 0). */
export function parseCountedLine(line: string): CountedCall {
  try {
    const j: unknown = JSON.parse(line);
    if (
      j &&
      typeof j === 'object' &&
      'd' in j &&
      'c' in j &&
      typeof j.d === 'string' &&
      typeof j.c === 'string'
    )
      return { description: j.d, costMicros: BigInt(j.c) };
  } catch {
    // fall through
  }
  return { description: line, costMicros: 0n };
}

/**
 * A call that produced tokens, as `FrameStore.append` counts it (`call`): pushed in the same script
 * as its usage event, so the count and the bill never disagree. Kept as long as the job's frames,
 * and at least until the request's deadline (no call after it).
 */
export function countedCall(
  data: JobData,
  call: CountedCall,
  ttlMs: number,
): { line: string; keepMs: number } {
  return { line: countedLine(call), keepMs: keepMs(data, ttlMs) };
}

const keepMs = (data: JobData, ttlMs: number) => Math.max(ttlMs, data.deadline - Date.now() + 60_000);

/** What earlier calls of the request left: the calls counted against its hold, and its route so far. */
export interface PriorCalls {
  calls: CountedCall[];
  route: RouteStep[];
}

export const NO_PRIOR_CALLS: PriorCalls = { calls: [], route: [] };

/** The request's counted calls and route so far (one round trip: both lists share its slot). */
export async function priorCalls(
  deps: Pick<WorkerDeps, 'redis' | 'keys'>,
  data: JobData,
): Promise<PriorCalls> {
  const res = await deps.redis
    .pipeline()
    .lrange(deps.keys.holdCalls(data.id), 0, -1)
    .lrange(deps.keys.route(data.id), 0, -1)
    .exec();
  const lines = (i: number): string[] => {
    const r = res?.[i];
    if (!r || r[0]) throw r?.[0] ?? new Error('pipeline aborted');
    return r[1] as string[];
  };
  return { calls: lines(0).map(parseCountedLine), route: parseRoute(lines(1)) };
}

/** Appends a call that failed to the request's route; returns the whole route (one round trip). */
export async function recordFailedStep(
  deps: Pick<WorkerDeps, 'redis' | 'keys'>,
  data: JobData,
  step: RouteStep,
  ttlMs: number,
): Promise<RouteStep[]> {
  const key = deps.keys.route(data.id);
  const res = await deps.redis
    .multi()
    .rpush(key, JSON.stringify(step))
    .pexpire(key, keepMs(data, ttlMs))
    .lrange(key, 0, -1)
    .exec();
  const r = res?.[2];
  if (!r || r[0]) throw r?.[0] ?? new Error('MULTI aborted');
  return parseRoute(r[1] as string[]);
}

function parseRoute(lines: string[]): RouteStep[] {
  const out: RouteStep[] = [];
  for (const l of lines) {
    try {
      const p = RouteStep.safeParse(JSON.parse(l));
      if (p.success) out.push(p.data);
    } catch {
      // a line another version wrote: skipped
    }
  }
  return out;
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
export function holdSpent(data: JobData, counted: CountedCall[]): HoldSpent {
  const calls = counted.map((c) => c.description);
  const n = holdCallsOf(data);
  return new HoldSpent({
    code: 'upstream_error',
    message:
      `The retry budget covered by the request's hold is spent: ${calls.length} provider call` +
      `${calls.length === 1 ? '' : 's'} already produced billable tokens and the hold, ${n} of the ` +
      `route's costliest call, has no room for another, so the gateway neither retries nor falls back. ` +
      `Attempts: ${calls.join('; ')}`,
    retryable: false,
  });
}
