import { z } from 'zod';
import { ErrorBody } from './errors.ts';
import { BatchStatus } from './openai-batches.ts';

/**
 * The WebSocket protocol v1 (`GET /v1/stream`) besides the job frames (`frames.ts`): what a client
 * sends, and the replies the server sends to it. The ingress parses `ClientOp`; the SDK parses
 * `ServerReply` (and `Frame` for messages that carry a job's `seq`).
 */

const Seq = z.number().int().nonnegative();

/** A batch's `request_counts` as its progress events carry them. */
export const BatchRequestCounts = z.object({
  total: z.number().int().nonnegative(),
  completed: z.number().int().nonnegative(),
  failed: z.number().int().nonnegative(),
});
export type BatchRequestCounts = z.infer<typeof BatchRequestCounts>;

export const ClientOp = z.discriminatedUnion('op', [
  z.object({
    op: z.literal('subscribe'),
    job: z.string().optional(),
    batch: z.string().optional(),
    /**
     * Job: the last seq you have. An OpenAI batch (`batch_…`): the last progress `seq` you have. A job
     * batch (`jbat_…`): `{ <job id>: last seq }` (missing jobs start at 0).
     */
    after: z.union([Seq, z.record(z.string(), Seq)]).optional(),
    id: z.string().optional(),
  }),
  z.object({
    op: z.literal('unsubscribe'),
    job: z.string().optional(),
    batch: z.string().optional(),
    id: z.string().optional(),
  }),
  z.object({ op: z.literal('submit'), request: z.unknown(), id: z.string().optional() }),
  z.object({
    op: z.literal('cancel'),
    job: z.string().optional(),
    batch: z.string().optional(),
    id: z.string().optional(),
  }),
  z.object({ op: z.literal('ping'), id: z.string().optional() }),
]);
export type ClientOp = z.infer<typeof ClientOp>;

const Op = z.enum(['subscribe', 'unsubscribe', 'submit', 'cancel', 'ping', 'unknown']);
/** Echoed from the client's op, so it can match replies to requests. */
const tag = { v: z.literal(1), id: z.string().optional() };

/** Fields a newer server adds are dropped by the reader, not refused. */
export const ServerReply = z.discriminatedUnion('type', [
  z.object({
    ...tag,
    type: z.literal('ack'),
    op: Op,
    job: z.string().optional(),
    batch: z.string().optional(),
    /** Subscribe to a job: the cursor it starts after, where the job stands, its state. */
    after: Seq.optional(),
    last_seq: Seq.optional(),
    state: z.string().optional(),
    /** The job ended at or before the cursor: nothing more will come. */
    ended: z.boolean().optional(),
    /** Subscribe to a job batch: its member jobs ('' for a refused request) and how many still run. */
    jobs: z.array(z.string()).optional(),
    pending: z.number().int().nonnegative().optional(),
    /** Subscribe to an OpenAI batch: its status and counts now (from the batch record). */
    status: BatchStatus.optional(),
    request_counts: BatchRequestCounts.optional(),
    /**
     * The oldest progress `seq` still kept (the stream is bounded), and `truncated: true` when events
     * after your cursor were dropped: delivery resumes at `first_seq`.
     */
    first_seq: Seq.optional(),
    truncated: z.boolean().optional(),
  }),
  z.object({
    ...tag,
    type: z.literal('nack'),
    op: Op,
    job: z.string().optional(),
    batch: z.string().optional(),
    /** The OpenAI error body, and whether trying again may help and after how long (as an `error` frame says). */
    error: ErrorBody.shape.error.extend({
      retryable: z.boolean().optional(),
      retryAfterMs: z.number().optional(),
    }),
  }),
  z.object({ ...tag, type: z.literal('pong') }),
  z.object({ v: z.literal(1), type: z.literal('batch_end'), batch: z.string() }),
]);
export type ServerReply = z.infer<typeof ServerReply>;
/** A reply before the protocol version is added (the server's `reply` adds `v: 1`). */
export type ServerReplyBody = ServerReply extends infer R
  ? R extends ServerReply
    ? Omit<R, 'v'>
    : never
  : never;

/** Statuses after which an OpenAI batch changes no more: its last progress event has one. */
export const FINAL_BATCH_STATUSES = ['completed', 'failed', 'expired', 'cancelled'] as const;

const progressBase = {
  v: z.literal(1),
  batch: z.string(),
  /** Per batch, from 1, increasing: resume with `after` = the last one you have. */
  seq: z.number().int().positive(),
  /** The batch's counts once this event happened. */
  request_counts: BatchRequestCounts,
};

/**
 * Progress of an OpenAI batch (`subscribe` with `batch: "batch_…"`), also the entries of the batch's
 * progress stream in Redis. One `batch_line` per line that ended, exactly once; one `batch_status`
 * per status the batch reached (a status that lasted less than a driver step may be skipped); the
 * last event has a final status.
 */
export const BatchProgressEvent = z.discriminatedUnion('type', [
  z.object({
    ...progressBase,
    type: z.literal('batch_line'),
    /** 1-based line of the input file. */
    line: z.number().int().positive(),
    custom_id: z.string(),
    /** The line's job id: `response.request_id` in the output file, `GET /v1/jobs/{id}`. */
    request_id: z.string(),
    /** `completed` (in the output file), `failed` (in the error file), or stopped by cancel / expiry. */
    status: z.enum(['completed', 'failed', 'cancelled', 'expired']),
    /** The HTTP status the line's request answered (200, or its error's), when it ran. */
    status_code: z.number().int().optional(),
  }),
  z.object({
    ...progressBase,
    type: z.literal('batch_status'),
    status: BatchStatus,
    /** With a final status: the result files (null when empty), as on the batch object. */
    output_file_id: z.string().nullable().optional(),
    error_file_id: z.string().nullable().optional(),
  }),
]);
export type BatchProgressEvent = z.infer<typeof BatchProgressEvent>;
