import { z } from 'zod';
import { ChatJobRequest } from './chat.ts';
import { EmbeddingsRequest } from './embeddings.ts';

/** One candidate of a route plan: which provider pool, and the model id that provider knows. */
export const RouteCandidate = z.object({
  provider: z.string(),
  model: z.string(),
  /** Known context window, so a context-length failure falls back only to a bigger window. */
  contextWindow: z.number().int().positive().optional(),
});
export type RouteCandidate = z.infer<typeof RouteCandidate>;

/**
 * The budget lease that admitted a request (the ingress reserves budget in leases that cover many
 * requests, see services/ingress/src/budget.ts): `micros` of hold row `id` belong to this request.
 * Absent when the request holds its own row (keyed by the request id).
 */
export const LeasedHold = z.object({ id: z.string(), micros: z.string().regex(/^\d+$/) });
export type LeasedHold = z.infer<typeof LeasedHold>;

/**
 * The payload of the one BullMQ job per request. Never carries provider keys (Redis is readable
 * and written to AOF). `id` is the request id; the BullMQ job id is `id` for hop 0 and
 * `<id>-h<hop>` for fallback hops.
 */
/** A W3C trace context (`traceparent`), carried from process to process when tracing is on. */
export const Traceparent = z.string().regex(/^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/);

const JobFields = z.object({
  v: z.literal(1),
  id: z.string(),
  account: z.string(),
  key: z.string(),
  /** What the caller asked for (`openai/gpt-4o-mini`, `gpt-4o-mini`, an alias): shown back in responses. */
  requestedModel: z.string(),
  plan: z.array(RouteCandidate).min(1),
  hop: z.number().int().nonnegative(),
  /** Emit delta frames (streaming callers and async jobs). Non-streaming calls need only the done frame. */
  deltas: z.boolean(),
  /**
   * Keep the job's record and frames the replay window although it streams no deltas: a batch line
   * (its result is collected later, and it can be looked up as a job) needs only its done frame,
   * but not for the minutes a waiting caller's frames live. See `recordTtlSeconds`.
   */
  retain: z.literal(true).optional(),
  /**
   * What the job streams is final: its caller is an SSE door, which cannot take streamed text back
   * (it ends its stream with an error on a `reset`). Once an attempt has streamed content, a failure
   * ends the job with that error rather than retrying or falling back: another call would be billed
   * for an answer nobody receives.
   */
  contentFinal: z.literal(true).optional(),
  /** Epoch ms. */
  created: z.number(),
  /** Epoch ms after which the request is failed rather than retried. */
  deadline: z.number(),
  /** Reply channel of the ingress process waiting for this job (frames are published there too). */
  replyTo: z.string().optional(),
  /** The budget lease that admitted the request; billing releases its share with the final usage event. */
  hold: LeasedHold.optional(),
  /**
   * How many provider calls that produce tokens the request's hold covers (the hold is that many times
   * the most one call may cost). The worker refuses a further call once this many have produced
   * tokens, so settlement never exceeds the hold. Absent: 1.
   */
  holdCalls: z.number().int().positive().optional(),
  /**
   * The most one provider call of the request may cost (µUSD, decimal): the hold is `holdCalls` of
   * them, and a further call starts only while the calls so far leave at least this much of it.
   */
  callMicros: z.string().regex(/^\d+$/).optional(),
  /**
   * An interactive request's patience with a rate-limited provider (ms from `created`): a 429 (or an
   * overload with retry-after) is waited out only while the wait ends within it, and at most
   * RATE_LIMIT_RETRIES times; then the request falls back or fails with the 429 and its retry-after.
   * Absent (async jobs): waits are bounded by the deadline only.
   */
  patienceMs: z.number().int().nonnegative().optional(),
  /**
   * The key's and account's per-minute limits, when one of them limits tokens, and the tokens the
   * request's admission counted (prompt, plus max_tokens when given): the worker charges the tokens
   * its calls used beyond that to the same buckets (packages/queue/src/request-limits.ts).
   */
  limits: z
    .object({
      keyRpm: z.number().int().positive().optional(),
      keyTpm: z.number().int().positive().optional(),
      accountRpm: z.number().int().positive().optional(),
      accountTpm: z.number().int().positive().optional(),
      admitted: z.number().int().nonnegative(),
    })
    .optional(),
  /** The request's trace context (W3C `traceparent`), when tracing is on: the worker's spans join it. */
  trace: Traceparent.optional(),
  /**
   * Attempts of this hop made before its BullMQ job existed (a fast-lane run, see
   * packages/queue/src/fast-lane.ts): attempt numbers (and usage ids) continue after them, and the
   * BullMQ attempt is a restart.
   */
  attemptBase: z.number().int().nonnegative().optional(),
  /**
   * The fast-lane run (`<hop>:<attempt>`) whose worker stopped renewing its lease after taking the
   * job, i.e. after it called the provider: the BullMQ re-run bills that call (attempt.ts), which
   * left no trace in the job's log when its answer was a whole one (no frames, no owner).
   */
  lostRun: z
    .string()
    .regex(/^\d+:\d+$/)
    .optional(),
  /** Errors of earlier hops, so the final error can name every attempt. */
  attempts: z
    .array(z.object({ provider: z.string(), model: z.string(), code: z.string(), message: z.string() }))
    .default([]),
});

/**
 * The job carries its operation: a chat completion (`op` absent or `chat`, as every job written
 * before embeddings existed) or an embeddings call. Everything else (routing, admission, the
 * queue, billing) is the same for both; the worker dispatches on `op` in one place (attempt.ts).
 */
export const ChatJobData = JobFields.extend({ op: z.literal('chat').optional(), request: ChatJobRequest });
export type ChatJobData = z.infer<typeof ChatJobData>;
export const EmbeddingsJobData = JobFields.extend({
  op: z.literal('embeddings'),
  request: EmbeddingsRequest,
});
export type EmbeddingsJobData = z.infer<typeof EmbeddingsJobData>;
export const JobData = z.discriminatedUnion('op', [ChatJobData, EmbeddingsJobData]);
export type JobData = z.infer<typeof JobData>;
export type JobOperation = NonNullable<JobData['op']>;

const isObj = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null;

/**
 * The envelope of a job record as a worker takes it (a fast-lane entry or a BullMQ job's data):
 * version 1, and the fields a worker reads before anything else with their types. Only gateway
 * processes write job records (an ingress, from a request it validated with `JobData`'s schemas in
 * `submit.ts`; a worker or a sweep, re-queuing a job it read), so the request inside is not checked
 * again field by field: on the hot path that parse cost more than the rest of the pickup.
 */
export function isJobEnvelope(x: unknown): x is JobData {
  if (!isObj(x) || x.v !== 1 || typeof x.id !== 'string' || x.id === '') return false;
  if (x.op !== undefined && x.op !== 'chat' && x.op !== 'embeddings') return false;
  if (!isObj(x.request) || typeof x.request.model !== 'string') return false;
  if ((x.op ?? 'chat') === 'chat' && !Array.isArray(x.request.messages)) return false;
  const plan = x.plan;
  if (!Array.isArray(plan) || plan.length === 0) return false;
  for (const c of plan)
    if (!isObj(c) || typeof c.provider !== 'string' || typeof c.model !== 'string') return false;
  return (
    typeof x.account === 'string' &&
    typeof x.key === 'string' &&
    typeof x.requestedModel === 'string' &&
    Number.isInteger(x.hop) &&
    typeof x.deltas === 'boolean' &&
    typeof x.created === 'number' &&
    typeof x.deadline === 'number' &&
    Array.isArray(x.attempts)
  );
}

/**
 * How long a job's record and frames live (seconds): the replay window (STREAM_TTL_SECONDS) for a
 * job that streams deltas or is retained, the minutes a waiting caller needs (SYNC_TTL_SECONDS)
 * otherwise. The one place that decides it: the ingress that records the job and the worker that
 * writes its frames both call it.
 */
export const recordTtlSeconds = (
  data: { deltas: boolean; retain?: true | undefined },
  timings: Record<'STREAM_TTL_SECONDS' | 'SYNC_TTL_SECONDS', number>,
): number => (data.deltas || data.retain ? timings.STREAM_TTL_SECONDS : timings.SYNC_TTL_SECONDS);

/** A line of an OpenAI batch: retained, no deltas (the only jobs queued that way: submit mode `batch`). */
export const isBatchLine = (data: { deltas: boolean; retain?: true | undefined }): boolean =>
  data.retain === true && !data.deltas;

export const jobIdForHop = (requestId: string, hop: number): string =>
  hop === 0 ? requestId : `${requestId}-h${hop}`;

export const JobState = z.enum([
  'queued',
  'running',
  'retrying',
  'fallback',
  'completed',
  'failed',
  'cancelled',
]);
export type JobState = z.infer<typeof JobState>;
