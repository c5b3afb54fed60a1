import type { ChatCompletion, ChatRequest, FinishReason, OpenAIUsage } from '@faregate/contracts/chat';
import type { ToolCallDelta } from '@faregate/contracts/frames';
import type { ErrorObject } from './errors.ts';

export type { ChatCompletion, ChatRequest } from '@faregate/contracts/chat';
export type { Frame, FrameOf, FrameType } from '@faregate/contracts/frames';

/** The minimal WebSocket surface the SDK uses: the WHATWG API, which `ws` also implements. */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  addEventListener(type: 'open' | 'error', listener: (ev: unknown) => void): void;
  addEventListener(type: 'message', listener: (ev: { data: unknown }) => void): void;
  addEventListener(type: 'close', listener: (ev: { code: number; reason: string }) => void): void;
}

/**
 * A WebSocket class taking `(url, { headers })`: both the `ws` package and Node's global (undici)
 * WebSocket accept this form, which is how the API key reaches the upgrade request.
 */
export type WebSocketConstructor = new (
  url: string,
  init: { headers: Record<string, string> },
) => WebSocketLike;

export interface FaregateOptions {
  /** Gateway base URL, e.g. `https://gateway.example.com` (a trailing `/v1` is accepted too). */
  baseURL: string;
  apiKey: string;
  /** Defaults to the global fetch. */
  fetch?: typeof fetch;
  /** Defaults to the `ws` package (Node), else the global WebSocket. */
  WebSocket?: WebSocketConstructor;
  /** Retries of idempotent HTTP calls on 429 / 5xx / network errors (default 2). */
  maxRetries?: number;
  /** Deadline of one HTTP call, including a whole non-streaming completion (default 10 min). */
  timeoutMs?: number;
  /** Consecutive failed WebSocket reconnects before subscriptions fail (default 10). */
  maxReconnects?: number;
  /** Extra headers on every request (and the WebSocket upgrade). */
  headers?: Record<string, string>;
}

export interface RequestOptions {
  signal?: AbortSignal;
}

export type ChatBody = Omit<ChatRequest, 'stream'> & { stream?: false | null };
export type ChatStreamBody = Omit<ChatRequest, 'stream'> & { stream: true };

/** One `chat.completion.chunk` of an OpenAI-style stream. */
export interface ChatCompletionChunk {
  id: string;
  object: 'chat.completion.chunk';
  created: number;
  model: string;
  system_fingerprint: string | null;
  choices: Array<{
    index: number;
    delta: {
      role?: 'assistant';
      content?: string | null;
      refusal?: string | null;
      tool_calls?: ToolCallDelta[];
    };
    logprobs: null;
    finish_reason: FinishReason | null;
  }>;
  /** Present (null or the totals) only with `stream_options.include_usage`. */
  usage?: OpenAIUsage | null;
}

export type JobState = 'queued' | 'running' | 'completed' | 'failed' | 'cancelled' | (string & {});

/** `GET /v1/jobs/:id`. */
export interface Job {
  id: string;
  object: 'job';
  status: JobState;
  model?: string;
  created_at?: number;
  result?: ChatCompletion;
  error?: ErrorObject;
  /** Sequence number of the terminal frame, once finished. */
  last_seq?: number;
}

/** `POST /v1/jobs` (202). */
export interface SubmittedJob {
  id: string;
  object: 'job';
  status: 'queued';
  model: string;
  created_at: number;
}

export interface SubscribeOptions {
  /** Resume after this sequence number (the last one you processed); 0 replays from the start. */
  after?: number;
  signal?: AbortSignal;
}

/** A finished job's output, assembled from its frames. */
export interface JobResult {
  id: string;
  /** The answer text, assembled from deltas (restarted generations discarded). */
  text: string;
  reasoning: string;
  /** The final response, the same shape as a non-streaming chat completion. */
  completion: ChatCompletion;
  /** Sequence number of the terminal frame. */
  lastSeq: number;
}
