import type { ChatRequest, Completion, FinishReason, TokenLogprob, Usage } from '@faregate/contracts/chat';
import type { Embeddings, EmbeddingsRequest } from '@faregate/contracts/embeddings';
import type { GatewayError } from '@faregate/contracts/errors';
import type { ToolCallDelta } from '@faregate/contracts/frames';

/** Which wire protocol a provider speaks. */
export type ProviderKind = 'openai' | 'anthropic' | 'gemini' | 'openai-compatible';

/** A configured provider instance (one per pool). Keys live only in worker processes. */
export interface ProviderConfig {
  /** Pool / queue name: `openai`, `anthropic`, `gemini`, `llama`, `groq`, … */
  id: string;
  kind: ProviderKind;
  /** Follows the official SDK's convention (providers.md "Base URL conventions"). */
  baseUrl: string;
  /** One or more keys; the pool rotates across them. May be empty for keyless local servers. */
  apiKeys: string[];
  /** Extra static headers (e.g. OpenRouter's HTTP-Referer). Never from tenants. */
  headers?: Record<string, string>;
  timeouts?: Partial<Timeouts>;
  /** Preset id (`presets.ts`) whose quirks an openai-compatible provider needs. */
  preset?: string;
  /** Points at the fake provider (FAKE_PROVIDER_URL): the worker should say so loudly. */
  fake?: boolean;
}

export interface Timeouts {
  connectMs: number;
  /**
   * Until response headers / first byte, of a stream. A whole answer's headers come when the answer
   * is done (a reasoning model's can take minutes): only `totalMs` bounds it.
   */
  firstByteMs: number;
  /** Longest silence between two chunks of a stream. */
  idleMs: number;
  /** Whole call. */
  totalMs: number;
}

/** An HTTP request to send upstream. `body` is already serialized. */
export interface UpstreamRequest {
  method: 'POST' | 'GET';
  url: string;
  headers: Record<string, string>;
  body?: string;
  /**
   * The largest 2xx body this request's answer may have, when it can be larger than a completion
   * (an embeddings list grows with inputs × dimensions); at least the call's fixed cap.
   */
  maxResponseBytes?: number;
}

/**
 * Typed events parsed out of a provider stream, the same for every provider. `choice` is the index
 * of the answer an event belongs to when the request asked for several (`n > 1`); absent means 0.
 */
export type StreamEvent =
  | { type: 'start'; upstreamId?: string; model?: string }
  | { type: 'text'; text: string; choice?: number }
  | { type: 'reasoning'; text: string; choice?: number }
  /** Anthropic's `signature_delta`: the signature of the thinking block open (it closes the block). */
  | { type: 'signature'; signature: string; choice?: number }
  /** Anthropic's `redacted_thinking` block, whole: its opaque data, to send back unchanged. */
  | { type: 'redacted_thinking'; data: string; choice?: number }
  /** OpenAI `delta.refusal` text (kept apart from content, as OpenAI does). */
  | { type: 'refusal'; text: string; choice?: number }
  | { type: 'tool_call'; delta: ToolCallDelta; choice?: number }
  /** Log probabilities of the tokens just streamed (OpenAI's shape). */
  | { type: 'logprobs'; content?: TokenLogprob[]; refusal?: TokenLogprob[]; choice?: number }
  /** Usage so far. Adapters normalize cumulative vs incremental, so the last one seen is the total. */
  | { type: 'usage'; usage: Usage }
  /** `stopSequence`: the stop sequence that ended the answer, when the provider says which. */
  | { type: 'finish'; reason: FinishReason; stopSequence?: string; choice?: number }
  /** Terminal: an in-band error after the 200 status. */
  | { type: 'error'; error: GatewayError }
  /** Terminal success marker ([DONE], message_stop, or the end of a Gemini stream that had a finishReason). */
  | { type: 'end' };

/** Incremental SSE→event parser. Bounded memory: a line over the limit yields an error event. */
export interface StreamParser {
  /** Feed raw bytes decoded as UTF-8 text; returns the events completed by this chunk. */
  push(chunk: string): StreamEvent[];
  /** The upstream body ended. Yields `end`, or an `error` event when the terminal event never came. */
  finish(): StreamEvent[];
}

/** Rate-limit state read from response headers (or an error body), in one common shape. */
export interface RateLimitInfo {
  limitRequests?: number;
  remainingRequests?: number;
  /** ms until the request budget is full again. */
  resetRequestsMs?: number;
  limitTokens?: number;
  remainingTokens?: number;
  resetTokensMs?: number;
  limitInputTokens?: number;
  remainingInputTokens?: number;
  resetInputTokensMs?: number;
  limitOutputTokens?: number;
  remainingOutputTokens?: number;
  resetOutputTokensMs?: number;
  /** From retry-after-ms / retry-after / Gemini RetryInfo. */
  retryAfterMs?: number;
}

export interface DiscoveredModel {
  /** The id the provider knows (no provider prefix). */
  id: string;
  displayName?: string;
  created?: number;
  contextWindow?: number;
  maxOutputTokens?: number;
  ownedBy?: string;
}

export interface BuildOptions {
  /** The provider's model id (route candidate's model). */
  model: string;
  stream: boolean;
  config: ProviderConfig;
  apiKey: string | undefined;
}

/**
 * A provider adapter: translation + HTTP shapes only (no Redis, no database).
 * One folder per provider exports one object of this type.
 */
/**
 * What the gateway reads of a provider answer's headers: `get`, as on fetch's `Headers` (a test may
 * pass one). A call hands over a view of undici's raw header object instead of building a `Headers`
 * (which validated and copied every header: ~5 % of a worker's CPU per request).
 */
export type HeaderReader = Pick<Headers, 'get'>;

export interface ProviderAdapter {
  kind: ProviderKind;
  /** Chat parameters this host refuses beyond its protocol's (a preset's `unsupported`): published to the ingress. */
  unsupported?: readonly string[];
  buildRequest(req: ChatRequest, opts: BuildOptions): UpstreamRequest;
  parseResponse(body: unknown): Completion;
  createStreamParser(opts: { model: string; maxLineBytes?: number }): StreamParser;
  /** Classify a non-2xx answer (or a transport failure when status is 0). */
  classifyError(status: number, headers: HeaderReader, bodyText: string): GatewayError;
  readRateLimits(headers: HeaderReader, bodyText?: string): RateLimitInfo;
  listModelsRequest(config: ProviderConfig, apiKey: string | undefined, pageToken?: string): UpstreamRequest;
  parseModels(body: unknown): { models: DiscoveredModel[]; nextPageToken?: string };
  /**
   * The embeddings operation, for a protocol that has one (Anthropic has none): the upstream request
   * (in the protocol's most compact encoding) and the parse of its answer into float vectors (the
   * gateway encodes the caller's format itself).
   * Errors and rate limits are read by the same `classifyError` / `readRateLimits` as chat.
   */
  embeddings?: {
    buildRequest(req: EmbeddingsRequest, opts: Omit<BuildOptions, 'stream'>): UpstreamRequest;
    parseResponse(body: unknown, inputs: number): Embeddings;
  };
}
