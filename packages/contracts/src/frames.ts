import { z } from 'zod';
import { ChatCompletion, OpenAIUsage, TokenLogprob } from './chat.ts';
import { EmbeddingsList } from './embeddings.ts';
import { SerializedError } from './errors.ts';
import { RouteStep } from './route.ts';

/**
 * Server frames of the WebSocket protocol v1, also the entries of each job's Redis Stream.
 * `seq` is per job, starts at 1 and has no gaps (the stream entry id is `0-<seq>`), so a client
 * resuming after `seq = n` receives n+1… exactly once.
 */
const base = { v: z.literal(1), job: z.string(), seq: z.number().int().positive() };

export const ToolCallDelta = z.object({
  index: z.number().int().nonnegative(),
  id: z.string().optional(),
  type: z.literal('function').optional(),
  function: z.object({ name: z.string().optional(), arguments: z.string().optional() }).optional(),
});
export type ToolCallDelta = z.infer<typeof ToolCallDelta>;

export const StatusState = z.enum(['queued', 'running', 'retrying', 'fallback']);

export const Frame = z.discriminatedUnion('type', [
  z.object({ ...base, type: z.literal('accepted'), model: z.string(), created: z.number() }),
  z.object({
    ...base,
    type: z.literal('status'),
    state: StatusState,
    provider: z.string().optional(),
    model: z.string().optional(),
    attempt: z.number().optional(),
    reason: z.string().optional(),
    /** `running`: the calls the request made before this one (retries, fallback hops). */
    route: z.array(RouteStep).optional(),
  }),
  z.object({
    ...base,
    type: z.literal('delta'),
    /** The choice this delta belongs to (`n > 1`); absent for the first. */
    choice: z.number().int().positive().optional(),
    text: z.string().optional(),
    /**
     * Thinking text. Anthropic's thinking comes in blocks: this continues the block open (the one
     * the last frames' reasoning went to), or opens one after a `signature` or `redacted_thinking`.
     */
    reasoning: z.string().optional(),
    /** Anthropic's signature of the open thinking block: it closes the block. */
    signature: z.string().optional(),
    /**
     * A whole `redacted_thinking` block of Anthropic's (its opaque data). A frame with one carries
     * no other thinking: the writer starts a frame at each block, so the order is the frames'.
     */
    redacted_thinking: z.string().optional(),
    refusal: z.string().optional(),
    tool_calls: z.array(ToolCallDelta).optional(),
    /** Log probabilities of the tokens in this delta (`logprobs: true`). */
    logprobs: z
      .object({ content: z.array(TokenLogprob).optional(), refusal: z.array(TokenLogprob).optional() })
      .optional(),
    /**
     * The prompt's counts as the provider told them before its answer (Anthropic's `message_start`),
     * on the call's first delta frame: a stream that opens with them (the Messages door's
     * `message_start`) says them there. The final counts come with `usage` and `done` as ever.
     */
    prompt: OpenAIUsage.optional(),
  }),
  z.object({ ...base, type: z.literal('reset'), reason: z.string(), hop: z.number(), attempt: z.number() }),
  z.object({ ...base, type: z.literal('usage'), usage: OpenAIUsage }),
  /** `result` is the HTTP chat.completion response; `route` every provider call made, the answering one last. */
  z.object({
    ...base,
    type: z.literal('done'),
    result: ChatCompletion,
    route: z.array(RouteStep).optional(),
    /** When the answer was complete (epoch ms): a replay of the job tells the same time. */
    at: z.number().optional(),
  }),
  /** An embeddings job's end: `result` is the HTTP embeddings list, `route` as on `done`. */
  z.object({
    ...base,
    type: z.literal('embeddings'),
    result: EmbeddingsList,
    route: z.array(RouteStep).optional(),
  }),
  /** `error.attempts`: the provider calls made before the request failed. */
  z.object({ ...base, type: z.literal('error'), status: z.number(), error: SerializedError }),
]);
export type Frame = z.infer<typeof Frame>;
export type FrameType = Frame['type'];
export type FrameOf<T extends FrameType> = Extract<Frame, { type: T }>;
/** A frame before the stream writer has assigned its job and sequence number. */
export type FrameBody = Frame extends infer F
  ? F extends Frame
    ? Omit<F, 'v' | 'job' | 'seq'>
    : never
  : never;

/**
 * A call's `done` frame, its fields in the order readers rely on: `result` last, so an ingress relays
 * the answer's bytes without parsing the frame (services/ingress/src/done-frame.ts). The one place
 * that lays it out.
 */
export function doneBody(
  route: RouteStep[],
  result: FrameOf<'done'>['result'],
  at: number,
): Omit<FrameOf<'done'>, 'v' | 'job' | 'seq'> {
  return { type: 'done', route, at, result };
}

export const isTerminal = (
  f: Pick<Frame, 'type'>,
): f is Pick<FrameOf<'done' | 'embeddings' | 'error'>, 'type'> =>
  f.type === 'done' || f.type === 'error' || f.type === 'embeddings';

/**
 * A frame read from another process (a job's stream, a live channel, a socket), checked against the
 * schema: `undefined` for anything that is not JSON or not a v1 frame. Readers that only forward
 * frames keep them raw (`isTerminalRaw`, `seqOf`); readers that look inside parse them here.
 */
export function parseFrame(raw: string): Frame | undefined {
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch {
    return undefined;
  }
  const r = Frame.safeParse(json);
  return r.success ? r.data : undefined;
}

/**
 * `isTerminal` of a frame still in its stored JSON form, without parsing it (readers forward frames
 * as they are). Sound because the type is a top-level field: inside any string value, as in a
 * delta's text, a quote is escaped (`\"type\":\"done\"`), so the pattern cannot occur there.
 */
export const isTerminalRaw = (raw: string): boolean =>
  raw.includes('"type":"done"') || raw.includes('"type":"error"') || raw.includes('"type":"embeddings"');
