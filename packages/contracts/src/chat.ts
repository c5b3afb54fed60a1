import { z } from 'zod';
import { fromLegacyFunctions, legacyChoice } from './legacy-functions.ts';
import { withRule } from './refine.ts';

/**
 * The OpenAI Chat Completions request, as callers send it. Unknown fields are refused at every level
 * (as OpenAI does: "Additional properties are not allowed"), naming where, rather than silently
 * dropped; provider-specific extras are never forwarded blindly (no `api_base`, no headers from
 * tenants). An assistant turn also takes what this gateway's own answers carry and SDKs send back
 * with it (`annotations`, `reasoning_content`, a null `audio`, a tool call's `index`, and the SDK
 * helpers' `parsed` and `parsed_arguments`), ignored. OpenAI's legacy function calling is taken and
 * translated into tools (legacy-functions.ts).
 */
/**
 * Anthropic's prompt-caching breakpoint, on a content part or a tool (LiteLLM's spelling of it in
 * OpenAI's shape; what `/v1/messages` takes on its blocks): an Anthropic target caches the prompt up
 * to it, and bills those tokens at the cache-write, then the cache-read price. Other providers cache
 * on their own: it is left out of their requests (it changes no answer).
 */
export const CacheControl = z.strictObject({
  type: z.literal('ephemeral'),
  ttl: z.enum(['5m', '1h']).optional(),
});
export type CacheControl = z.infer<typeof CacheControl>;

/**
 * OpenAI's reasoning efforts, every value its SDK sends: `none` (GPT-5.1 and later: no reasoning),
 * `minimal` (GPT-5), `low`, `medium`, `high`, `xhigh` and `max` (the newest models). The OpenAI
 * adapter passes the value on and the provider judges it for the model; other providers translate
 * it (Anthropic's thinking budget, Gemini's), `none` and `minimal` to no thinking.
 */
export const ReasoningEffort = z.enum(['none', 'minimal', 'low', 'medium', 'high', 'xhigh', 'max']);
export type ReasoningEffort = z.infer<typeof ReasoningEffort>;

/** An effort that asks the model to reason (`none` asks it not to; `minimal` is GPT-5's least). */
export const asksReasoning = (effort: ReasoningEffort | null | undefined): boolean =>
  effort != null && effort !== 'none';

/**
 * An optional field whose `null` means "not given", as OpenAI takes it: clients that build requests
 * from optional arguments (`tool_choice=None`, LangChain's defaults) send `null` for what they leave
 * out. Parsed to `undefined` (zod keeps the key; `ChatRequest` drops it; the embeddings request's adapters skip it), so nothing downstream sees
 * a `null` and no adapter sends one on.
 */
export const absentIfNull = <T extends z.ZodType>(s: T) =>
  s
    .nullable()
    .transform((v) => (v === null ? undefined : (v as Exclude<z.output<T>, null>)))
    .optional();

const cache_control = absentIfNull(CacheControl);

const TextPart = z.strictObject({ type: z.literal('text'), text: z.string(), cache_control });
const ImagePart = z.strictObject({
  type: z.literal('image_url'),
  image_url: z.strictObject({
    url: z.string().min(1),
    detail: absentIfNull(z.enum(['auto', 'low', 'high'])),
  }),
  cache_control,
});
const AudioPart = z.strictObject({
  type: z.literal('input_audio'),
  input_audio: z.strictObject({ data: z.string(), format: z.string() }),
});
const FilePart = z.strictObject({
  type: z.literal('file'),
  file: z.strictObject({
    file_data: absentIfNull(z.string()),
    file_id: absentIfNull(z.string()),
    filename: absentIfNull(z.string()),
  }),
  cache_control,
});
const RefusalPart = z.strictObject({ type: z.literal('refusal'), refusal: z.string() });
/**
 * OpenAI's `metadata` (chat completions, responses, batches): up to 16 pairs, keys up to 64
 * characters, values up to 512.
 */
export const Metadata = z
  .record(z.string().max(64), z.string().max(512))
  .refine((m) => Object.keys(m).length <= 16, 'at most 16 metadata pairs');

export const ContentPart = z.discriminatedUnion('type', [
  TextPart,
  ImagePart,
  AudioPart,
  FilePart,
  RefusalPart,
]);
export type ContentPart = z.infer<typeof ContentPart>;

export const ToolCall = z.object({
  id: z.string(),
  type: z.literal('function'),
  function: z.object({ name: z.string(), arguments: z.string() }),
});
export type ToolCall = z.infer<typeof ToolCall>;

const Content = z.union([z.string(), z.array(ContentPart)]);

/** A tool call of an earlier assistant turn, as sent back (`index`: left by streamed answers; ignored). */
const SentToolCall = z
  .strictObject({
    id: z.string(),
    type: z.literal('function'),
    function: z
      .strictObject({ name: z.string(), arguments: z.string(), parsed_arguments: z.unknown().optional() })
      .transform(({ parsed_arguments: _, ...f }) => f),
    index: z.number().int().nonnegative().optional(),
  })
  .transform(({ index: _, ...call }) => call);

/**
 * Anthropic's thinking of an earlier assistant turn, sent back unchanged (LiteLLM's
 * `thinking_blocks`): Anthropic requires it, signature and all, to continue a tool-use
 * conversation with thinking on. Only the Anthropic adapter sends it on; it is Anthropic-signed,
 * so the other providers leave it out of their requests.
 */
export const ThinkingBlock = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('thinking'), thinking: z.string(), signature: z.string().min(1) }),
  z.strictObject({ type: z.literal('redacted_thinking'), data: z.string().min(1) }),
]);
export type ThinkingBlock = z.infer<typeof ThinkingBlock>;

/** An earlier assistant turn as callers send it back (SDKs send their answers back with it). */
const AssistantTurn = z.strictObject({
  role: z.literal('assistant'),
  content: Content.nullable().optional(),
  // The SDKs send an answer's message back with its unset fields as null (Python's model_dump
  // and stream helpers): null is no name, no tool calls.
  name: z.string().nullable().optional(),
  refusal: z.string().nullable().optional(),
  tool_calls: z.array(SentToolCall).nullable().optional(),
  thinking_blocks: z.array(ThinkingBlock).max(256).optional(),
  // Carried by answers (this gateway's among them) and sent back by SDKs with the turn: ignored.
  annotations: z.array(z.unknown()).nullable().optional(),
  reasoning_content: z.string().nullable().optional(),
  audio: z.null().optional(),
  // OpenAI's legacy function call, as an answer carries it: null is none (a set one is a caller's
  // only: `RequestMessage`).
  function_call: z.null().optional(),
  // What the OpenAI SDKs' helpers add to a message they built (`stream()`, `parse()`).
  parsed: z.unknown().optional(),
});

/**
 * An assistant turn as sent back, without what answers carry and SDKs echo (ignored: annotations,
 * reasoning_content, audio, the helpers' `parsed`) and with its null fields left out.
 */
function sentTurn<T extends { name?: string | null; tool_calls?: unknown[] | null }>({
  annotations: _a,
  reasoning_content: _r,
  audio: _au,
  parsed: _p,
  name,
  tool_calls,
  ...m
}: T & { annotations?: unknown; reasoning_content?: unknown; audio?: unknown; parsed?: unknown }) {
  return {
    ...m,
    ...(name == null ? {} : { name }),
    ...(tool_calls == null ? {} : { tool_calls: tool_calls as NonNullable<T['tool_calls']> }),
  };
}

const SystemMessage = z.strictObject({
  role: z.literal('system'),
  content: Content,
  name: absentIfNull(z.string()),
});
const DeveloperMessage = z.strictObject({
  role: z.literal('developer'),
  content: Content,
  name: absentIfNull(z.string()),
});
const UserMessage = z.strictObject({
  role: z.literal('user'),
  content: Content,
  name: absentIfNull(z.string()),
});
const ToolMessage = z.strictObject({
  role: z.literal('tool'),
  content: Content,
  tool_call_id: z.string(),
  /**
   * The called tool's name: not in OpenAI's types, but its API takes it and LangChain sends it on
   * every tool result. Passed to OpenAI-protocol hosts; the tool_call_id says which call elsewhere.
   */
  name: absentIfNull(z.string()),
});

/**
 * A message as the gateway carries it (a job's request, what every adapter translates): the legacy
 * function calling of a caller's request is already tool calls and tool messages here (see
 * `RequestMessage`).
 */
export const ChatMessage = z.discriminatedUnion('role', [
  SystemMessage,
  DeveloperMessage,
  UserMessage,
  AssistantTurn.transform(({ function_call: _f, ...turn }) => sentTurn(turn)),
  ToolMessage,
]);
export type ChatMessage = z.infer<typeof ChatMessage>;

/** OpenAI's legacy function call of an assistant turn (`function_call`, deprecated for `tool_calls`). */
export const LegacyFunctionCall = z.strictObject({ name: z.string(), arguments: z.string() });
export type LegacyFunctionCall = z.infer<typeof LegacyFunctionCall>;

/**
 * A message as a caller may send it: a `ChatMessage`, or OpenAI's legacy function calling (an
 * assistant turn's `function_call`, a `role: "function"` message answering it by name), which the
 * request's parse turns into tool calls and tool messages (legacy-functions.ts).
 */
export const RequestMessage = z.discriminatedUnion('role', [
  SystemMessage,
  DeveloperMessage,
  UserMessage,
  // One pass, as the carried form's (the common case is a turn without a function call).
  AssistantTurn.extend({ function_call: LegacyFunctionCall.nullable().optional() }).transform(
    ({ function_call, ...turn }) => ({
      ...sentTurn(turn),
      ...(function_call == null ? {} : { function_call }),
    }),
  ),
  ToolMessage,
  z.strictObject({
    role: z.literal('function'),
    name: z.string(),
    content: z.string().nullable().optional(),
  }),
]);
export type RequestMessage = z.infer<typeof RequestMessage>;

/**
 * OpenAI's rule for a function's name (Anthropic's too) and for a structured output's schema name
 * (`json_schema.name`): a name another provider would refuse is refused here. One rule for every
 * door that takes such a name (chat's `tools`, `functions` and `response_format`, Responses' `tools`
 * and `text.format`).
 */
export const OpenAIName = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[a-zA-Z0-9_-]+$/, "must match '^[a-zA-Z0-9_-]+$' (letters, digits, '_' and '-')");

export const Tool = z.strictObject({
  type: z.literal('function'),
  cache_control,
  function: z.strictObject({
    name: OpenAIName,
    description: absentIfNull(z.string()),
    parameters: absentIfNull(z.record(z.string(), z.unknown())),
    strict: z.boolean().nullable().optional(),
  }),
});
export type Tool = z.infer<typeof Tool>;

export const ToolChoice = z.union([
  z.enum(['none', 'auto', 'required']),
  z.strictObject({ type: z.literal('function'), function: z.strictObject({ name: z.string() }) }),
]);
export type ToolChoice = z.infer<typeof ToolChoice>;

export const ResponseFormat = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('text') }),
  z.strictObject({ type: z.literal('json_object') }),
  z.strictObject({
    type: z.literal('json_schema'),
    json_schema: z.strictObject({
      name: OpenAIName,
      description: absentIfNull(z.string()),
      schema: absentIfNull(z.record(z.string(), z.unknown())),
      strict: z.boolean().nullable().optional(),
    }),
  }),
]);
export type ResponseFormat = z.infer<typeof ResponseFormat>;

const BIAS = 'expected a bias from -100 to 100';

/**
 * OpenAI's `logit_bias`: token ids (decimal integer strings) mapped to a bias from -100 to 100, as its
 * API reference gives it; any other key (`constructor` too) or value is the 400 naming it
 * (`logit_bias.constructor`), never sent on. A `__proto__` key never gets here: the JSON parser
 * refuses it on every way in (parseJsonText).
 */
const LogitBias = z.record(
  // No tokenizer has ten million tokens: a longer id is in no vocabulary. Biases are integers
  // (OpenAI's API reference types them so).
  z.string().regex(/^\d{1,7}$/),
  z.number().int(BIAS).min(-100, BIAS).max(100, BIAS),
  {
    error: (iss) =>
      iss.code === 'invalid_key'
        ? 'expected a token id (a decimal integer below 10,000,000) as the key'
        : undefined,
  },
);

/**
 * The parsed request without the keys whose value is `undefined` (a `null` taken as not given): the
 * carried form is re-read strictly (an idempotent retry's `doorOf`), and `functions: undefined` is a
 * key it does not know.
 */
function dropUndefined<T extends object>(r: T): T {
  for (const k of Object.keys(r))
    if ((r as Record<string, unknown>)[k] === undefined) delete (r as Record<string, unknown>)[k];
  return r;
}

/** The fields of a chat request other than its model and messages (the caller's form and the carried one). */
const requestFields = {
  stream: z.boolean().nullable().optional(),
  stream_options: z
    .strictObject({
      include_usage: absentIfNull(z.boolean()),
      include_obfuscation: absentIfNull(z.boolean()),
    })
    .nullable()
    .optional(),
  max_tokens: z.number().int().positive().nullable().optional(),
  max_completion_tokens: z.number().int().positive().nullable().optional(),
  temperature: z.number().min(0).max(2).nullable().optional(),
  top_p: z.number().min(0).max(1).nullable().optional(),
  /** Not OpenAI's: Anthropic's and Gemini's top-k sampling (what `/v1/messages` takes as `top_k`). */
  top_k: z.number().int().nonnegative().nullable().optional(),
  /** Choices to generate: passed to targets that can (capabilities.ts), refused elsewhere. */
  n: z.number().int().min(1).max(128).nullable().optional(),
  /** Up to 5 (Gemini's most); OpenAI's 4 is its target's rule (capabilities.ts). */
  stop: z
    .union([z.string(), z.array(z.string()).max(5)], {
      error: 'expected a string or an array of at most 5 strings (the most any provider takes)',
    })
    .nullable()
    .optional(),
  seed: z.number().int().nullable().optional(),
  presence_penalty: z.number().min(-2).max(2).nullable().optional(),
  frequency_penalty: z.number().min(-2).max(2).nullable().optional(),
  logprobs: z.boolean().nullable().optional(),
  top_logprobs: z.number().int().min(0).max(20).nullable().optional(),
  logit_bias: LogitBias.nullable().optional(),
  tools: absentIfNull(z.array(Tool).max(128)),
  tool_choice: absentIfNull(ToolChoice),
  parallel_tool_calls: absentIfNull(z.boolean()),
  response_format: absentIfNull(ResponseFormat),
  reasoning_effort: ReasoningEffort.nullable().optional(),
  /** OpenAI's GPT-5 answer length hint: passed to OpenAI, refused elsewhere (capabilities.ts). */
  verbosity: z.enum(['low', 'medium', 'high']).nullable().optional(),
  user: absentIfNull(z.string().max(256)),
  safety_identifier: absentIfNull(z.string().max(256)),
  metadata: Metadata.nullable().optional(),
  store: z.boolean().nullable().optional(),
  service_tier: z.string().nullable().optional(),
  /** OpenAI's prompt-cache routing hint: passed to OpenAI, dropped elsewhere (it changes no answer). */
  prompt_cache_key: z.string().max(1024).nullable().optional(),
  /** How long OpenAI keeps the prompt cache: passed to OpenAI, dropped elsewhere (it changes no answer). */
  prompt_cache_retention: z.enum(['in_memory', '24h']).nullable().optional(),
  /**
   * OpenAI's Predicted Outputs: text the answer is expected to largely repeat (a file being edited),
   * so the model writes faster. Passed to OpenAI, refused elsewhere (capabilities.ts). Predicted
   * tokens the answer does not use are billed as output (`rejected_prediction_tokens`).
   */
  prediction: absentIfNull(
    z.strictObject({
      type: z.literal('content'),
      content: z.union([
        z.string(),
        z.array(z.strictObject({ type: z.literal('text'), text: z.string() })).min(1),
      ]),
    }),
  ),
  /**
   * OpenAI's audio output and the search models' web search: not served through this gateway (a
   * search is billed per call, apart from tokens). `null`, as SDK dumps send them, is not given.
   */
  audio: absentIfNull(
    z.custom<never>(() => false, 'audio output is not served through this gateway (text only)'),
  ),
  web_search_options: absentIfNull(
    z.custom<never>(
      () => false,
      'web search is not served through this gateway (its searches are billed per call, apart from tokens)',
    ),
  ),
  /**
   * Output modalities: text is what every target answers (OpenAI's default); audio output is not
   * served through this gateway, so only `["text"]` is taken (and no adapter sends it on).
   */
  modalities: z
    .array(z.literal('text', { error: "only 'text' output is served through this gateway" }))
    .max(4)
    .nullable()
    .optional(),
};

const messagesOf = <T extends z.ZodType>(message: T) =>
  z.array(message).min(1, 'messages must contain at least one message').max(4096);

// As OpenAI answers: stream_options says how to stream, and means nothing without a stream
// (on every way in: the door, jobs, batch lines, WebSocket submits).
const streamOptionsRule = (
  r: { stream?: boolean | null | undefined; stream_options?: unknown },
  ctx: z.core.$RefinementCtx,
): void => {
  if (r.stream_options != null && r.stream !== true)
    ctx.addIssue({
      code: 'custom',
      path: ['stream_options'],
      message: "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
      params: { verbatim: true },
    });
};

/**
 * A chat request as the gateway carries it (a job's `request`; what routing, admission and every
 * adapter read): `ChatRequest`'s parse of a caller's request, read back as written. OpenAI's legacy
 * function calling is tools here, and `legacy_functions` (set only by that parse, never taken from a
 * caller) says the answer goes back in the legacy shape (`function_call`, see legacy-functions.ts).
 */
export const ChatJobRequest = withRule(
  z.strictObject({
    model: z.string().min(1).max(256),
    messages: messagesOf(ChatMessage),
    ...requestFields,
    legacy_functions: z.literal(true).optional(),
    /**
     * Anthropic's `thinking.budget_tokens` as the Messages door was given it (set only by that door,
     * never taken from a chat caller): Anthropic and Gemini think with this budget exactly, where a
     * `reasoning_effort` alone gets its level's (OpenAI's reasoning models get the effort).
     */
    thinking_budget: z.number().int().min(1024).optional(),
  }),
  streamOptionsRule,
);
export type ChatJobRequest = z.infer<typeof ChatJobRequest>;

/**
 * The OpenAI Chat Completions request as a caller sends it, parsed into the request the gateway
 * carries (`ChatJobRequest`). OpenAI's deprecated, still served, `functions` / `function_call` and
 * the legacy turns of the history (an assistant's `function_call`, `role: "function"` messages)
 * become tools, a tool choice, tool calls and tool messages (legacy-functions.ts); a request with none
 * of them is passed on as parsed.
 */
export const ChatRequest = withRule(
  z.strictObject({
    model: z.string().min(1).max(256),
    messages: messagesOf(RequestMessage),
    ...requestFields,
    /** Deprecated for `tools`: the functions the model may call (OpenAI's legacy function calling). */
    functions: absentIfNull(
      z
        .array(
          z.strictObject({
            name: OpenAIName,
            description: z.string().optional(),
            parameters: z.record(z.string(), z.unknown()).optional(),
          }),
        )
        .min(1, 'empty array: give at least one function')
        .max(128),
    ),
    /** Deprecated for `tool_choice`: `none`, `auto`, or `{ name }` (a function to call). */
    function_call: absentIfNull(z.union([z.enum(['none', 'auto']), z.strictObject({ name: z.string() })])),
  }),
  streamOptionsRule,
).transform(
  (r, ctx): ChatJobRequest =>
    fromLegacyFunctions(dropUndefined(r), (path, message) => {
      ctx.addIssue({ code: 'custom', path, message, params: { verbatim: true } });
    }) ?? z.NEVER,
);
/** The request parsed: the gateway's form of it (`ChatJobRequest`). */
export type ChatRequest = z.infer<typeof ChatRequest>;

/** Normalized token usage, the same for every provider (see providers.md §0.1). */
export const Usage = z.object({
  /** All input tokens, cached ones included. */
  inputTokens: z.number().int().nonnegative(),
  /** Input tokens read from a provider cache (subset of inputTokens). */
  cachedInputTokens: z.number().int().nonnegative(),
  /** Input tokens written to a provider cache (Anthropic; subset of inputTokens). */
  cacheWriteTokens: z.number().int().nonnegative(),
  /** Of those, the ones written with a 1-hour TTL (Anthropic prices them apart); absent = none. */
  cacheWrite1hTokens: z.number().int().nonnegative().optional(),
  /** All output tokens, reasoning/thinking included. */
  outputTokens: z.number().int().nonnegative(),
  /** Reasoning / thinking tokens (subset of outputTokens). */
  reasoningTokens: z.number().int().nonnegative(),
  /** OpenAI's Predicted Outputs: predicted tokens the answer used, and those it did not (billed as output). */
  acceptedPredictionTokens: z.number().int().nonnegative().optional(),
  rejectedPredictionTokens: z.number().int().nonnegative().optional(),
});
export type Usage = z.infer<typeof Usage>;

export const zeroUsage = (): Usage => ({
  inputTokens: 0,
  cachedInputTokens: 0,
  cacheWriteTokens: 0,
  outputTokens: 0,
  reasoningTokens: 0,
});

export const FinishReason = z.enum(['stop', 'length', 'tool_calls', 'content_filter', 'function_call']);
export type FinishReason = z.infer<typeof FinishReason>;

/** One token's log probability, in OpenAI's shape (`choices[].logprobs.content[]`). */
export const TokenLogprob = z.object({
  token: z.string(),
  logprob: z.number(),
  bytes: z.array(z.number().int()).nullable(),
  top_logprobs: z.array(
    z.object({ token: z.string(), logprob: z.number(), bytes: z.array(z.number().int()).nullable() }),
  ),
});
export type TokenLogprob = z.infer<typeof TokenLogprob>;

/** A choice's log probabilities, as OpenAI returns them with `logprobs: true`. */
export const ChoiceLogprobs = z.object({
  content: z.array(TokenLogprob).nullable(),
  refusal: z.array(TokenLogprob).nullable(),
});
export type ChoiceLogprobs = z.infer<typeof ChoiceLogprobs>;

/** One generated answer (a request with `n > 1` has several). */
export const CompletionChoice = z.object({
  content: z.string().nullable(),
  refusal: z.string().nullable().optional(),
  /** The thinking text, every block's joined (for readers of text only: `reasoning_content`). */
  reasoning: z.string().optional(),
  /**
   * Anthropic's signature of the thinking in `reasoning` when it is one signed block (kept for
   * readers of one block); `thinkingBlocks` is the whole thinking, the one to send back.
   */
  reasoningSignature: z.string().optional(),
  /**
   * Anthropic's thinking as it came, block by block in order: each `thinking` with its own
   * signature, `redacted_thinking` with its opaque data. A later turn sends them back unchanged
   * (`thinking_blocks`). A thinking block cut before its signature is in `reasoning` only.
   */
  thinkingBlocks: z.array(ThinkingBlock).optional(),
  toolCalls: z.array(ToolCall),
  finishReason: FinishReason,
  /** The stop sequence that ended the answer, when the provider says which (Anthropic, vLLM). */
  stopSequence: z.string().optional(),
  /** Present when the request asked for `logprobs` and the provider returned them. */
  logprobs: ChoiceLogprobs.optional(),
});
export type CompletionChoice = z.infer<typeof CompletionChoice>;

/**
 * What every adapter's parse of a complete response (or an assembled stream) yields: the first
 * choice's fields at the top, the others (`n > 1`) in `moreChoices`, in index order from 1.
 */
export const Completion = CompletionChoice.extend({
  /** Upstream response id (never shown to callers as ours). */
  upstreamId: z.string().optional(),
  /** The model the provider says served the call. */
  model: z.string(),
  /** Usage of the whole call (every choice). */
  usage: Usage,
  moreChoices: z.array(CompletionChoice).optional(),
});
export type Completion = z.infer<typeof Completion>;

/** OpenAI's usage object (what callers see), derived from the normalized one by `toOpenAIUsage`. */
export const OpenAIUsage = z.looseObject({
  prompt_tokens: z.number().int().nonnegative(),
  completion_tokens: z.number().int().nonnegative(),
  total_tokens: z.number().int().nonnegative(),
  prompt_tokens_details: z.looseObject({
    cached_tokens: z.number().int().nonnegative(),
    audio_tokens: z.number().int().nonnegative(),
    /** Input tokens written to a provider cache (OpenRouter's name; Anthropic's cache writes). */
    cache_write_tokens: z.number().int().nonnegative().optional(),
    /** Of those, written with a 1-hour TTL (present only when some were): they cost more. */
    cache_write_1h_tokens: z.number().int().nonnegative().optional(),
  }),
  completion_tokens_details: z.looseObject({
    reasoning_tokens: z.number().int().nonnegative(),
    audio_tokens: z.number().int().nonnegative(),
    accepted_prediction_tokens: z.number().int().nonnegative(),
    rejected_prediction_tokens: z.number().int().nonnegative(),
  }),
  /**
   * What the request cost, in USD (OpenRouter's convention): every provider call of the request
   * that produced tokens (retries and fallbacks included), at its listed price: what the ledger
   * settles for it. Absent only on frames written before the gateway reported it.
   */
  cost: z.number().nonnegative().optional(),
});
export type OpenAIUsage = z.infer<typeof OpenAIUsage>;

export function toOpenAIUsage(u: Usage): OpenAIUsage {
  return {
    prompt_tokens: u.inputTokens,
    completion_tokens: u.outputTokens,
    total_tokens: u.inputTokens + u.outputTokens,
    prompt_tokens_details: {
      cached_tokens: u.cachedInputTokens,
      audio_tokens: 0,
      cache_write_tokens: u.cacheWriteTokens,
      ...(u.cacheWrite1hTokens ? { cache_write_1h_tokens: u.cacheWrite1hTokens } : {}),
    },
    completion_tokens_details: {
      reasoning_tokens: u.reasoningTokens,
      audio_tokens: 0,
      accepted_prediction_tokens: u.acceptedPredictionTokens ?? 0,
      rejected_prediction_tokens: u.rejectedPredictionTokens ?? 0,
    },
  };
}

/**
 * The HTTP `chat.completion` response, also the `result` of a job's done frame. Loose objects: a
 * reader keeps fields it does not know (a newer writer's additions) instead of dropping them.
 */
export const ChatCompletion = z.looseObject({
  id: z.string(),
  object: z.literal('chat.completion'),
  created: z.number(),
  model: z.string(),
  choices: z.array(
    z.looseObject({
      index: z.number().int().nonnegative(),
      message: z.looseObject({
        role: z.literal('assistant'),
        content: z.string().nullable(),
        refusal: z.string().nullable(),
        tool_calls: z.array(ToolCall).optional(),
        /**
         * OpenAI's legacy function call, instead of `tool_calls`, when the request used `functions`
         * (the answer's first tool call; the finish reason is then `function_call`).
         */
        function_call: z.object({ name: z.string(), arguments: z.string() }).optional(),
        annotations: z.array(z.unknown()),
        /** The model's reasoning text, when the provider returns it (DeepSeek's and vLLM's name). */
        reasoning_content: z.string().optional(),
        /**
         * Anthropic's thinking blocks, each signed, redacted ones included, in order (LiteLLM's
         * name): the shape an assistant message takes them back in, for a later turn.
         */
        thinking_blocks: z.array(ThinkingBlock).optional(),
      }),
      logprobs: ChoiceLogprobs.nullable(),
      finish_reason: FinishReason,
      /** The stop sequence that ended this choice, when the provider says which (vLLM's name). */
      stop_reason: z.string().optional(),
    }),
  ),
  usage: OpenAIUsage,
  system_fingerprint: z.string().nullable(),
  service_tier: z.string().nullable(),
  /** Faregate: the provider that served the answer (`model` is `<provider>/<model id>`). */
  provider: z.string().optional(),
});
export type ChatCompletion = z.infer<typeof ChatCompletion>;

/** The gateway's name of a model a provider serves (`model` in answers, `/v1/models` ids). */
export const servedModelName = (provider: string, model: string): string => `${provider}/${model}`;

/**
 * The normalized response format: one shape whatever provider served the call. `model` is the
 * model that generated the answer in the gateway's `provider/model` form (as OpenRouter does),
 * whatever name the caller used (an alias, a bare name, `auto`); `costMicros` the request's cost.
 */
export function toChatCompletion(
  id: string,
  served: { provider: string; model: string },
  created: number,
  c: Completion,
  costMicros: bigint,
  /** The request used OpenAI's legacy `functions` (`legacy_functions`): each choice answers in that shape. */
  legacyFunctions = false,
): ChatCompletion {
  return {
    id,
    object: 'chat.completion',
    created,
    model: servedModelName(served.provider, served.model),
    provider: served.provider,
    choices: [c, ...(c.moreChoices ?? [])].map((ch, index) =>
      legacyFunctions ? legacyChoice(toChoice(ch, index)) : toChoice(ch, index),
    ),
    usage: { ...toOpenAIUsage(c.usage), cost: Number(costMicros) / 1_000_000 },
    system_fingerprint: null,
    service_tier: 'default',
  };
}

function toChoice(c: CompletionChoice, index: number): ChatCompletion['choices'][number] {
  return {
    index,
    message: {
      role: 'assistant',
      content: c.content,
      refusal: c.refusal ?? null,
      ...(c.toolCalls.length > 0 ? { tool_calls: c.toolCalls } : {}),
      annotations: [],
      ...(c.reasoning ? { reasoning_content: c.reasoning } : {}),
      ...thinkingBlocksOf(c),
    },
    logprobs: c.logprobs ?? null,
    finish_reason: c.finishReason,
    ...(c.stopSequence !== undefined ? { stop_reason: c.stopSequence } : {}),
  };
}

/** A choice's signed thinking, as the message's `thinking_blocks` (absent when there is none). */
function thinkingBlocksOf(c: CompletionChoice): { thinking_blocks?: ThinkingBlock[] } {
  if (c.thinkingBlocks?.length) return { thinking_blocks: c.thinkingBlocks };
  // A completion from before the blocks were carried: its one signed block.
  if (c.reasoning && c.reasoningSignature)
    return {
      thinking_blocks: [{ type: 'thinking', thinking: c.reasoning, signature: c.reasoningSignature }],
    };
  return {};
}

/** The max output tokens a request asks for, whichever field it used. */
export function requestedMaxTokens(r: ChatRequest): number | undefined {
  return r.max_completion_tokens ?? r.max_tokens ?? undefined;
}

/** One `chat.completion.chunk` of an OpenAI-style SSE stream (what the ingress sends, the SDK reads). */
export const ChatCompletionChunk = z.object({
  id: z.string(),
  object: z.literal('chat.completion.chunk'),
  created: z.number(),
  model: z.string(),
  system_fingerprint: z.string().nullable(),
  choices: z.array(
    z.object({
      index: z.number().int().nonnegative(),
      delta: z.object({
        role: z.literal('assistant').optional(),
        content: z.string().nullable().optional(),
        reasoning_content: z.string().optional(),
        /** Anthropic's thinking blocks so far, all of them, once the thinking is over. */
        thinking_blocks: z.array(ThinkingBlock).optional(),
        refusal: z.string().nullable().optional(),
        /** OpenAI's legacy function call (a request with `functions`): the name first, then argument pieces. */
        function_call: z.object({ name: z.string().optional(), arguments: z.string().optional() }).optional(),
        tool_calls: z
          .array(
            z.object({
              index: z.number().int().nonnegative(),
              id: z.string().optional(),
              type: z.literal('function').optional(),
              function: z
                .object({ name: z.string().optional(), arguments: z.string().optional() })
                .optional(),
            }),
          )
          .optional(),
      }),
      logprobs: ChoiceLogprobs.nullable(),
      finish_reason: FinishReason.nullable(),
    }),
  ),
  /** Present (null or the totals) only with `stream_options.include_usage`. */
  usage: OpenAIUsage.nullable().optional(),
});
export type ChatCompletionChunk = z.infer<typeof ChatCompletionChunk>;
