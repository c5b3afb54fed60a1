import type { ChatCompletion, ChatRequest } from '@faregate/contracts/chat';
import type { BatchStatus } from '@faregate/contracts/openai-batches';
import type { BatchProgressEvent, BatchRequestCounts } from '@faregate/contracts/ws';

export type { ChatCompletion, ChatCompletionChunk, ChatRequest } from '@faregate/contracts/chat';
/** `GET /v1/jobs/:id` (`Job`) and `POST /v1/jobs` (202, `SubmittedJob`). */
export type { JobView as Job, SubmittedJob } from '@faregate/contracts/job-api';
export type { JobState } from '@faregate/contracts/jobs';
export type { Frame, FrameOf, FrameType } from '@faregate/contracts/frames';
export type { BatchObject, BatchStatus, FileObject } from '@faregate/contracts/openai-batches';
export type { BatchProgressEvent, BatchRequestCounts } from '@faregate/contracts/ws';

/**
 * Stands for progress events the gateway no longer kept when a subscription resumed (its stream of
 * a batch is bounded): `missed` events before `seq`, and the batch's status and counts as they are.
 */
export interface BatchProgressGap {
  v: 1;
  type: 'batch_gap';
  batch: string;
  seq: number;
  missed: number;
  status: BatchStatus;
  request_counts: BatchRequestCounts;
}

/** What `batches.progress()` yields. */
export type BatchProgress = BatchProgressEvent | BatchProgressGap;

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

// `legacy_functions` is the gateway's own mark on a parsed request, never sent.
export type ChatBody = Omit<ChatRequest, 'stream' | 'legacy_functions'> & { stream?: false | null };
export type ChatStreamBody = Omit<ChatRequest, 'stream' | 'legacy_functions'> & { stream: true };

export interface SubscribeOptions {
  /** Resume after this sequence number (the last one you processed); 0 replays from the start. */
  after?: number;
  signal?: AbortSignal;
}

/** One choice's output, assembled from its deltas (`n > 1` asks for several). */
export interface ChoiceOutput {
  index: number;
  text: string;
  reasoning: string;
}

/** A finished job's output, assembled from its frames. */
export interface JobResult {
  id: string;
  /** The answer text, assembled from deltas (restarted generations discarded): the first choice's. */
  text: string;
  /** The first choice's reasoning. */
  reasoning: string;
  /** Every choice's text and reasoning, by index (one for a request without `n`). */
  choices: ChoiceOutput[];
  /** The final response, the same shape as a non-streaming chat completion. */
  completion: ChatCompletion;
  /** Sequence number of the terminal frame. */
  lastSeq: number;
}
