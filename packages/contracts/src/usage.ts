import { z } from 'zod';
import type { Usage } from './chat.ts';
import { type JobData, LeasedHold, Traceparent } from './jobs.ts';

/**
 * One provider call's token usage, emitted by the worker on the usage stream and settled by
 * billing exactly once (unique `id`). Every provider call that produced tokens is recorded,
 * retries and fallbacks included.
 */
export const UsageEvent = z.object({
  v: z.literal(1),
  /** Stable: `<requestId>.h<hop>.a<attempt>`; settling the same id twice is a no-op. */
  id: z.string(),
  requestId: z.string(),
  account: z.string(),
  key: z.string(),
  provider: z.string(),
  model: z.string(),
  hop: z.number().int().nonnegative(),
  attempt: z.number().int().nonnegative(),
  inputTokens: z.number().int().nonnegative(),
  cachedInputTokens: z.number().int().nonnegative(),
  cacheWriteTokens: z.number().int().nonnegative(),
  /** Of the cache writes, those with a 1-hour TTL (absent on events of calls that wrote none). */
  cacheWrite1hTokens: z.number().int().nonnegative().optional(),
  outputTokens: z.number().int().nonnegative(),
  reasoningTokens: z.number().int().nonnegative(),
  /** success: the caller got this answer; failed: the call broke after producing tokens; cancelled: caller went away. */
  outcome: z.enum(['success', 'failed', 'cancelled']),
  /** The request's last event (success or final failure): billing releases its admission hold. A request that
   *  ends without tokens still emits one final event with zero tokens. */
  final: z.boolean(),
  /** On a final event of a request admitted under a budget lease: the share of the lease to release
   *  (without it, the final event releases the hold row keyed by the request id). */
  hold: LeasedHold.optional(),
  /** Tokens estimated by the gateway (the provider cut the stream before reporting usage). */
  estimated: z.boolean().optional(),
  /** The request's trace context (W3C `traceparent`), when tracing is on: settlement joins the trace. */
  trace: Traceparent.optional(),
  /** Epoch ms when the provider call ended. */
  at: z.number(),
});
export type UsageEvent = z.infer<typeof UsageEvent>;

export const usageEventId = (requestId: string, hop: number, attempt: number): string =>
  `${requestId}.h${hop}.a${attempt}`;

/** One provider call of a job: the hop of its plan and the attempt that made it. */
export interface JobCall {
  job: Pick<JobData, 'id' | 'account' | 'key' | 'hold' | 'trace'>;
  hop: number;
  attempt: number;
  provider: string;
  model: string;
}

/**
 * The usage event of one call: the one builder of the shape (a worker's attempt, and a re-run
 * billing the call of an attempt that died). A final event carries the job's lease share.
 */
export function callUsageEvent(
  call: JobCall,
  usage: Usage,
  outcome: UsageEvent['outcome'],
  opts: { final: boolean; estimated: boolean; at: number },
): UsageEvent {
  const { job } = call;
  return {
    v: 1,
    id: usageEventId(job.id, call.hop, call.attempt),
    requestId: job.id,
    account: job.account,
    key: job.key,
    provider: call.provider,
    model: call.model,
    hop: call.hop,
    attempt: call.attempt,
    inputTokens: usage.inputTokens,
    cachedInputTokens: usage.cachedInputTokens,
    cacheWriteTokens: usage.cacheWriteTokens,
    ...(usage.cacheWrite1hTokens ? { cacheWrite1hTokens: usage.cacheWrite1hTokens } : {}),
    outputTokens: usage.outputTokens,
    reasoningTokens: usage.reasoningTokens,
    outcome,
    final: opts.final,
    ...(opts.final && job.hold ? { hold: job.hold } : {}),
    ...(opts.estimated ? { estimated: true } : {}),
    ...(job.trace ? { trace: job.trace } : {}),
    at: opts.at,
  };
}
