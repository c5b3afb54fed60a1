/** Public types of the fake provider server (re-exported from `server.ts`). */

export type FakeProviderId = 'openai' | 'anthropic' | 'gemini' | 'llama';
export const FAKE_PROVIDERS: readonly FakeProviderId[] = ['openai', 'anthropic', 'gemini', 'llama'];

export const FAULT_KINDS = [
  '429',
  '500',
  '503',
  '529',
  '400',
  'context_length',
  'hang_before_headers',
  'hang_mid_stream',
  'cut_mid_stream',
  'cut_after_burst',
  'malformed_sse',
  'inband_error',
  'huge_line',
  'slow_stream',
  'unknown_event',
] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

/**
 * One scripted misbehaviour. On a non-streaming request the stream faults degrade sensibly:
 * `hang_mid_stream` sends headers and no body, `cut_mid_stream` and `cut_after_burst` cut the body in
 * half, `malformed_sse`
 * sends an invalid JSON body, `inband_error` answers like `500` (Anthropic: `529`), `huge_line` pads the
 * JSON body, `slow_stream` delays the body by chunkMs per token, `unknown_event` has no effect.
 */
export interface Fault {
  fault: FaultKind;
  /** Stream faults: how many SSE events are sent before the fault (default 2). */
  afterChunks?: number;
  /**
   * `cut_after_burst`: content tokens the burst carries (default: every event up to the terminal one).
   * The burst is the events after the first `afterChunks`, written at once, up to the one that
   * reaches this count (`tokensPerChunk` sets how many tokens one event carries).
   */
  burstTokens?: number;
  /**
   * `cut_after_burst`: where the cut lands. `line` (default): right after the data line of the burst's
   * last event, before the blank line that would end it. `half`: after the whole burst and the first
   * half of the next event.
   */
  tail?: 'line' | 'half';
  /** `429`: the wait advertised in retry-after-ms / retry-after / RetryInfo (default 1000). */
  retryAfterMs?: number;
  /** `slow_stream`: the delay between chunks (default 500). */
  chunkMs?: number;
  /** `huge_line`: size of the line in bytes (default 4 MiB). */
  bytes?: number;
  /** Control API only: the fault applies only to requests for this model (alias or dated id). */
  model?: string;
}

/**
 * What a `[[fake:{…}]]` directive in the last user message may ask for: a fault, and/or reply shaping.
 * `fault` is optional here: `[[fake:{"cachedTokens":100}]]` is a valid directive.
 */
export interface Directive extends Partial<Fault> {
  /** Reply length in tokens (still capped by the request's max tokens). */
  tokens?: number;
  /** Prompt tokens reported as served from cache (capped at the prompt size). */
  cachedTokens?: number;
  /** Reasoning / thinking tokens reported on top of the visible reply. */
  reasoningTokens?: number;
  /** Answer with a tool call: `true` (the first tool) or a tool name. Needs `tools` in the request. */
  tool?: boolean | string;
  /** With `tool`: how many calls the answer holds (parallel calls; Gemini renders them). Default 1. */
  calls?: number;
}

/** Behaviour settings; each provider has its own copy. */
export interface FakeConfig {
  /** Delay before the response headers (and first chunk). */
  firstByteMs: number;
  /** Delay between stream chunks; a non-streaming reply waits chunkMs per token. */
  chunkMs: number;
  /** Default reply length in tokens. */
  tokens: number;
  /** Tokens per stream chunk. */
  tokensPerChunk: number;
  /** Requests per minute before answering 429 (token bucket, like OpenAI's); 0 = unlimited. */
  rpm: number;
  /** Served model ids. Only settable together with `provider`. */
  models: string[];
}

/**
 * One request as the provider would bill it. Token fields are normalized across providers so they can be
 * compared with the gateway's usage: `promptTokens` includes cached tokens (Anthropic reports
 * `input_tokens` = prompt − cached), `completionTokens` includes reasoning tokens (Gemini reports
 * `candidatesTokenCount` = completion − reasoning). For a stream cut midway: what was sent before the cut.
 */
export interface CallRecord {
  seq: number;
  provider: FakeProviderId;
  path: string;
  /** As requested (`null` for listings). */
  model: string | null;
  stream: boolean;
  /** HTTP status sent; 0 while no headers were sent (e.g. `hang_before_headers`). */
  status: number;
  fault?: FaultKind;
  promptTokens: number;
  completionTokens: number;
  cachedTokens: number;
  reasoningTokens: number;
  /** Arrival time, ms since the epoch. */
  at: number;
  requestId: string;
  /** The SDKs' `X-Stainless-Retry-Count` header (0 when absent). */
  retryCount: number;
}
