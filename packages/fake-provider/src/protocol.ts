import type { IncomingMessage } from 'node:http';
import type { Conversation, Reply } from './content.ts';
import type { Limits } from './state.ts';
import type { FakeConfig, FakeProviderId } from './types.ts';

/** Provider-neutral error situations; each protocol renders them in its real shape. */
export type ErrorKind =
  | { kind: 'auth_missing' }
  | { kind: 'auth_bad' }
  | { kind: 'bad_request'; message: string; param?: string }
  | { kind: 'model_not_found'; model: string }
  | { kind: 'not_found'; message: string }
  | { kind: 'rate_limit'; retryAfterMs: number; limit: number; model: string }
  /** OpenAI: the request alone needs more tokens than the per-minute limit (a 429 no wait cures). */
  | { kind: 'request_too_large'; limit: number; requested: number; model: string }
  | { kind: 'server' }
  | { kind: 'unavailable' }
  | { kind: 'overloaded' }
  | { kind: 'context_length'; tokens: number; limit: number; model: string };

export interface ErrorReply {
  status: number;
  body: string;
  headers?: Record<string, string>;
}

/** A generation request, parsed. */
export interface Parsed {
  model: string;
  stream: boolean;
  /** OpenAI `stream_options.include_usage`. */
  includeUsage: boolean;
  /** OpenAI `logprobs: true`, with `top_logprobs` (0 when absent). */
  logprobs?: { top: number };
  /** Gemini streams: SSE (`alt=sse`) or a JSON array. */
  sse: boolean;
  conversation: Conversation;
}

/** Everything a renderer needs for one response. */
export interface RenderCtx {
  /** Response id (`chatcmpl-…`, `msg_…`, Gemini responseId). */
  id: string;
  /** Unix seconds. */
  created: number;
  /** The model name the response reports. */
  model: string;
  parsed: Parsed;
  reply: Reply;
  config: FakeConfig;
}

/** One SSE event (complete, with its trailing blank line) and the output tokens it carries. */
export interface SseEvent {
  text: string;
  tokens: number;
}

export interface Protocol {
  id: FakeProviderId;
  /** Checks credentials (headers or `?key=`). */
  auth(req: IncomingMessage, url: URL): ErrorKind | undefined;
  /** Parses a generation body; `pathModel` is the model from the URL (Gemini). */
  parse(body: unknown, url: URL, pathModel: string | undefined): Parsed | ErrorKind;
  error(e: ErrorKind, requestId: string): ErrorReply;
  /** Headers for every response: request id, rate-limit state. */
  headers(requestId: string, limits: Limits, config: FakeConfig): Record<string, string>;
  /** The served model name a response reports (OpenAI echoes, Anthropic reports the dated id). */
  reportedModel(requested: string, served: string): string;
  json(ctx: RenderCtx): string;
  stream(ctx: RenderCtx): SseEvent[];
  streamContentType(parsed: Parsed): string;
  /** In-stream fault events, in this protocol's framing. */
  malformedEvent(ctx: RenderCtx): string;
  inbandErrorEvent(ctx: RenderCtx): string;
  hugeEvent(ctx: RenderCtx, bytes: number): string;
  unknownEvent(ctx: RenderCtx): string;
  /** What an `inband_error` fault becomes on a non-streaming request. */
  inbandAsStatus: ErrorKind;
}

export function isErrorKind(x: Parsed | ErrorKind): x is ErrorKind {
  return 'kind' in x;
}

/** Groups one-token pieces into chunks of `per` tokens. */
export function chunkPieces(pieces: string[], per: number): string[][] {
  if (per <= 1) return pieces.map((p) => [p]);
  const out: string[][] = [];
  for (let i = 0; i < pieces.length; i += per) out.push(pieces.slice(i, i + per));
  return out;
}

/** A padding string of `bytes` characters, cheap to build. */
export function padding(bytes: number): string {
  return 'x'.repeat(Math.max(0, Math.floor(bytes)));
}
