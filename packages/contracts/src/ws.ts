import { z } from 'zod';
import { ErrorBody } from './errors.ts';

/**
 * The WebSocket protocol v1 (`GET /v1/stream`) besides the job frames (`frames.ts`): what a client
 * sends, and the replies the server sends to it. The ingress parses `ClientOp`; the SDK parses
 * `ServerReply` (and `Frame` for messages that carry a job's `seq`).
 */

const Seq = z.number().int().nonnegative();

export const ClientOp = z.discriminatedUnion('op', [
  z.object({
    op: z.literal('subscribe'),
    job: z.string().optional(),
    batch: z.string().optional(),
    /** Job: the last seq you have. Batch: `{ <job id>: last seq }` (missing jobs start at 0). */
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
    /** Subscribe to a batch: its member jobs ('' for a refused request) and how many still run. */
    jobs: z.array(z.string()).optional(),
    pending: z.number().int().nonnegative().optional(),
  }),
  z.object({
    ...tag,
    type: z.literal('nack'),
    op: Op,
    job: z.string().optional(),
    batch: z.string().optional(),
    error: ErrorBody.shape.error,
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
