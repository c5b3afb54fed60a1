import {
  type ChatMessage,
  type ChatRequest,
  type ContentPart,
  asksReasoning,
  requestedMaxTokens,
} from '@faregate/contracts/chat';
import type { EmbeddingsRequest } from '@faregate/contracts/embeddings';

/**
 * What each wire protocol can do with a request's parameters, in one table: the ingress checks a
 * request against every route candidate before queueing (a candidate that cannot honour it is left
 * out; none left is a 400 naming the parameter and the provider), and the adapters apply the same
 * table when they build the request. A parameter is never silently dropped: it is passed through,
 * translated (listed in the README's parameter table), or refused here.
 */
export type ProtocolKind = 'openai' | 'anthropic' | 'gemini' | 'openai-compatible';

/** A parameter a target cannot honour, and why (the 400's message names the provider). */
export interface Refusal {
  param: string;
  message: string;
}

const has = (v: unknown): boolean =>
  v !== undefined && v !== null && v !== false && !(typeof v === 'object' && Object.keys(v).length === 0);

/**
 * OpenAI's default tiers: the catalog's prices. Others are refused, as billing would not be at cost:
 * `priority` and `scale` cost more than the list price, `flex` less (Batch API rates).
 */
const defaultTier = (t: string | null | undefined) => t == null || t === 'auto' || t === 'default';

interface ChatRule {
  param: keyof ChatRequest;
  /** True when the request uses the parameter in a way this protocol cannot honour. */
  refused: (r: ChatRequest) => boolean;
  why: string;
}

/**
 * Why a protocol cannot take one content part of a message of `role` (its adapter could not build
 * it), or undefined: the refusal names the part (`messages.3.content.1`).
 */
type PartCheck = (p: ContentPart, role: ChatMessage['role']) => string | undefined;

/** A rule over the content parts: the first part `check` refuses, in the order sent. */
interface PartRule {
  parts: PartCheck;
}

/** A rule that finds what it refuses anywhere in the request, and names it (its path, and why). */
interface FoundRule {
  find: (r: ChatRequest) => { at: string; why: string } | undefined;
}

/**
 * A tool call sent back in an assistant turn: Anthropic (`tool_use.input`) and Gemini
 * (`functionCall.args`) take its arguments as an object, so they must be a JSON object (or blank, no
 * arguments); OpenAI takes the string as it is. Refused here, at the caller's path, rather than by the
 * adapter after the request was queued (both read them with `argumentsObject`).
 */
const ARGUMENTS_OBJECT: FoundRule = {
  find: (r) => {
    for (const [i, m] of r.messages.entries()) {
      if (m.role !== 'assistant' || !m.tool_calls) continue;
      for (const [j, c] of m.tool_calls.entries()) {
        if (argumentsObject(c.function.arguments) === undefined)
          return {
            at: `messages.${i}.tool_calls.${j}.function.arguments`,
            why: "takes a tool call's arguments as a JSON object, and these are not one",
          };
      }
    }
    return undefined;
  },
};

/**
 * A tool call's arguments (a JSON string) as the object Anthropic and Gemini take: blank is no
 * arguments (`{}`); anything but a JSON object is undefined. The one reading of them: this table's
 * refusal and the adapters' translation (providers' shared/content.ts) agree by construction.
 */
export function argumentsObject(args: string): Record<string, unknown> | undefined {
  if (args.trim() === '') return {};
  try {
    const v: unknown = JSON.parse(args);
    if (typeof v === 'object' && v !== null && !Array.isArray(v)) return v as Record<string, unknown>;
  } catch {
    // not JSON
  }
  return undefined;
}

/** Answers with one choice only: `n > 1` and log probabilities have no counterpart there. */
const ONE_CHOICE: readonly ChatRule[] = [
  {
    param: 'n',
    refused: (r) => r.n != null && r.n > 1,
    why: 'returns one choice per request (send n requests instead)',
  },
  {
    param: 'logprobs',
    refused: (r) => r.logprobs === true,
    why: 'returns no log probabilities through this gateway',
  },
  {
    param: 'top_logprobs',
    refused: (r) => r.top_logprobs != null,
    why: 'returns no log probabilities through this gateway',
  },
];

/** Anthropic's and Gemini's sampling parameter: OpenAI's protocol has none. */
const NO_TOP_K: ChatRule = {
  param: 'top_k',
  refused: (r) => r.top_k != null,
  why: 'has no top-k sampling (use temperature or top_p)',
};

/** OpenAI's protocol: `top_logprobs` means something only with `logprobs: true`, as OpenAI says. */
const TOP_LOGPROBS_ALONE: ChatRule = {
  param: 'top_logprobs',
  refused: (r) => r.top_logprobs != null && r.logprobs !== true,
  why: 'needs logprobs: true alongside it',
};

/** OpenAI's GPT-5 `verbosity` (the Responses API's `text.verbosity`): no other protocol has it. */
const NO_VERBOSITY: ChatRule = {
  param: 'verbosity',
  refused: (r) => r.verbosity != null,
  why: "has no verbosity setting (it is OpenAI's, for GPT-5 models)",
};

const NO_PREDICTION: ChatRule = {
  param: 'prediction',
  refused: (r) => r.prediction != null,
  why: "has no predicted outputs (they are OpenAI's)",
};

/** A user or assistant message with nothing in it (Anthropic refuses it; it was dropped before). */
const emptyTurn = (m: ChatRequest['messages'][number]): boolean =>
  (m.role === 'user' || (m.role === 'assistant' && !m.tool_calls?.length && !m.thinking_blocks?.length)) &&
  (typeof m.content === 'string'
    ? m.content.trim() === ''
    : Array.isArray(m.content) && m.content.every((p) => p.type === 'text' && p.text.trim() === ''));

const textual = (p: ContentPart) => p.type === 'text' || p.type === 'refusal';

/** A base64 `data:` URL (of `mediaType` when given), as the adapters take inline content. */
const inline = (url: string | undefined, mediaType = '[^,;]*') =>
  url !== undefined && new RegExp(`^data:${mediaType};base64,`).test(url);

const IMAGE_BY_URL = 'takes an image by an http(s) URL or a base64 data: URL only';

/**
 * What Anthropic's adapter builds from a part: an image by URL or inline, an inline PDF as a
 * document; no audio. A system prompt is text only.
 */
const anthropicPart: PartCheck = (p, role) => {
  if (role === 'system' || role === 'developer')
    return textual(p)
      ? undefined
      : `takes only text in a ${role} message (send a ${p.type} part in a user message)`;
  if (p.type === 'input_audio') return 'takes no audio input (an input_audio part)';
  if (p.type === 'file' && !inline(p.file.file_data, 'application/pdf'))
    return "takes a file only as an inline PDF (file_data as a base64 data: URL of application/pdf; a file_id is OpenAI's stored file)";
  if (p.type === 'image_url' && !/^https?:\/\//.test(p.image_url.url) && !inline(p.image_url.url))
    return IMAGE_BY_URL;
  return undefined;
};

/**
 * What Gemini's adapter builds from a part: images by URL or inline, audio, inline files. A
 * system prompt is text only, and so is a tool result: a function response is a JSON object
 * (providers.md §3.2).
 */
const geminiPart: PartCheck = (p, role) => {
  if (textual(p)) return undefined;
  if (role === 'tool') return 'takes only text in a tool result (send an image or a file in a user message)';
  if (role === 'system' || role === 'developer')
    return `takes only text in a ${role} message (send a ${p.type} part in a user message)`;
  if (p.type === 'file' && !inline(p.file.file_data))
    return "takes a file only inline (file_data as a base64 data: URL; a file_id is OpenAI's stored file)";
  if (p.type === 'image_url' && !/^https?:\/\//.test(p.image_url.url) && !inline(p.image_url.url))
    return IMAGE_BY_URL;
  return undefined;
};

/** The first part `check` refuses (`messages.3.content.1`) and why, or undefined. */
function refusedPart(r: ChatRequest, check: PartCheck): { at: string; why: string } | undefined {
  for (const [i, m] of r.messages.entries()) {
    if (!Array.isArray(m.content)) continue;
    for (const [j, p] of m.content.entries()) {
      const why = check(p, m.role);
      if (why !== undefined) return { at: `messages.${i}.content.${j}`, why };
    }
  }
  return undefined;
}

/** A reasoning effort that turns Anthropic's extended thinking on (`none` and `minimal` do not). */
const thinks = (r: ChatRequest) => asksReasoning(r.reasoning_effort) && r.reasoning_effort !== 'minimal';

const stops = (r: ChatRequest) => (r.stop == null ? 0 : typeof r.stop === 'string' ? 1 : r.stop.length);

const CHAT_RULES: Record<ProtocolKind, readonly (ChatRule | PartRule | FoundRule)[]> = {
  openai: [
    NO_TOP_K,
    TOP_LOGPROBS_ALONE,
    { param: 'stop', refused: (r) => stops(r) > 4, why: 'takes at most 4 stop sequences' },
    {
      param: 'service_tier',
      refused: (r) => !defaultTier(r.service_tier),
      why: 'bills another price than the listed one at that tier, and the gateway bills at cost (auto and default pass through)',
    },
  ],
  anthropic: [
    ...ONE_CHOICE,
    ARGUMENTS_OBJECT,
    NO_VERBOSITY,
    NO_PREDICTION,
    // Extended thinking (the adapter's translation of a reasoning effort): a budget of at least 1,024
    // tokens below max_tokens, and temperature 1 only. Refused here, by the names the caller sent,
    // rather than by the worker after the request was queued.
    {
      param: 'reasoning_effort',
      refused: (r) => thinks(r) && (requestedMaxTokens(r) ?? Number.POSITIVE_INFINITY) <= 1024,
      why: "reasons with a budget of at least 1,024 tokens below the answer's token limit: ask for more than 1,024 output tokens, or leave reasoning out",
    },
    {
      param: 'temperature',
      refused: (r) => thinks(r) && r.temperature != null && r.temperature !== 1,
      why: 'takes only temperature 1 while it reasons',
    },
    // Anthropic's extended thinking also refuses forced tool use, top_k, and a top_p below 0.95.
    {
      param: 'tool_choice',
      refused: (r) =>
        thinks(r) && !!r.tools?.length && (r.tool_choice === 'required' || typeof r.tool_choice === 'object'),
      why: 'cannot be made to call a tool while it reasons (tool_choice auto or none only): leave the choice to the model, or leave reasoning out',
    },
    {
      param: 'top_k',
      refused: (r) => thinks(r) && r.top_k != null,
      why: 'takes no top_k while it reasons',
    },
    {
      param: 'top_p',
      refused: (r) => thinks(r) && r.top_p != null && r.top_p < 0.95,
      why: 'takes a top_p between 0.95 and 1 while it reasons',
    },
    {
      param: 'temperature',
      refused: (r) => r.temperature != null && r.temperature > 1,
      why: 'takes a temperature between 0 and 1',
    },
    { param: 'presence_penalty', refused: (r) => !!r.presence_penalty, why: 'has no penalties' },
    { param: 'frequency_penalty', refused: (r) => !!r.frequency_penalty, why: 'has no penalties' },
    { param: 'logit_bias', refused: (r) => has(r.logit_bias), why: 'has no logit bias' },
    {
      param: 'seed',
      refused: (r) => r.seed != null,
      why: 'has no seed (sampling cannot be made reproducible)',
    },
    {
      param: 'metadata',
      refused: (r) => has(r.metadata),
      why: 'has no request metadata (it keeps only an end-user id: use `user`)',
    },
    { param: 'store', refused: (r) => r.store === true, why: 'does not store completions' },
    {
      param: 'service_tier',
      refused: (r) => !defaultTier(r.service_tier),
      why: 'is served at its default tier only through this gateway',
    },
    {
      param: 'response_format',
      refused: (r) => r.response_format?.type === 'json_object',
      why: "has structured output by schema only (send type 'json_schema' with a schema)",
    },
    {
      param: 'messages',
      refused: (r) => r.messages.some(emptyTurn),
      why: 'takes no empty turn (a user or assistant message needs text other than whitespace, other parts, or tool calls)',
    },
    { parts: anthropicPart },
  ],
  gemini: [
    ARGUMENTS_OBJECT,
    // candidateCount and responseLogprobs exist, but are not translated yet (README).
    ...ONE_CHOICE,
    NO_VERBOSITY,
    NO_PREDICTION,
    { param: 'logit_bias', refused: (r) => has(r.logit_bias), why: 'has no logit bias' },
    { param: 'stop', refused: (r) => stops(r) > 5, why: 'takes at most 5 stop sequences' },
    { parts: geminiPart },
    {
      param: 'user',
      refused: (r) => r.user !== undefined,
      why: 'has no end-user field (its API takes no caller identifier)',
    },
    {
      param: 'safety_identifier',
      refused: (r) => r.safety_identifier !== undefined,
      why: 'has no end-user field (its API takes no caller identifier)',
    },
    { param: 'metadata', refused: (r) => has(r.metadata), why: 'has no request metadata' },
    { param: 'store', refused: (r) => r.store === true, why: 'does not store completions' },
    {
      param: 'service_tier',
      refused: (r) => !defaultTier(r.service_tier),
      why: 'is served at its default tier only through this gateway',
    },
  ],
  'openai-compatible': [
    // n and logprobs pass through; hosts without them refuse them (presets.ts, `unsupported`).
    NO_TOP_K,
    NO_VERBOSITY,
    NO_PREDICTION,
    TOP_LOGPROBS_ALONE,
    { param: 'metadata', refused: (r) => has(r.metadata), why: 'has no request metadata' },
    { param: 'store', refused: (r) => r.store === true, why: 'does not store completions' },
    {
      param: 'service_tier',
      refused: (r) => !defaultTier(r.service_tier),
      why: 'is served at its default tier only through this gateway',
    },
  ],
};

/**
 * The first of a host's own refusals (`unsupported`, its preset's list: `logprobs` on Together, `seed`
 * on Groq, …) the request uses, or undefined. `n: 1` is every host's default: only more choices are
 * refused; other fields count when set (not null, not false).
 */
export function unsupportedRefusal(
  unsupported: readonly string[],
  provider: string,
  req: ChatRequest,
): Refusal | undefined {
  for (const field of unsupported) {
    const v = (req as Record<string, unknown>)[field];
    if (field === 'tool_choice') {
      // A host that ignores tool_choice: `auto` and `none` mean what it does anyway.
      if (v !== undefined && v !== 'auto' && v !== 'none')
        return {
          param: field,
          message: `'tool_choice' is not supported by ${provider}: it cannot force a tool call (send 'auto' or 'none', or choose another model).`,
        };
      continue;
    }
    if (field === 'n' ? typeof v === 'number' && v > 1 : v !== undefined && v !== null && v !== false)
      return { param: field, message: `'${field}' is not supported by ${provider}.` };
  }
  return undefined;
}

/** The first chat parameter `provider` (speaking `kind`) cannot honour, or undefined. */
export function chatRefusal(kind: string, provider: string, req: ChatRequest): Refusal | undefined {
  const rules = Object.hasOwn(CHAT_RULES, kind) ? CHAT_RULES[kind as ProtocolKind] : [];
  for (const rule of rules) {
    const hit =
      'parts' in rule
        ? refusedPart(req, rule.parts)
        : 'find' in rule
          ? rule.find(req)
          : rule.refused(req)
            ? { at: rule.param, why: rule.why }
            : undefined;
    if (hit) return { param: hit.at, message: `'${hit.at}' is not supported by ${provider}: it ${hit.why}.` };
  }
  return undefined;
}

/**
 * OpenAI's reasoning models (o-series, GPT-5) answer a sampling parameter other than its default
 * with a 400 ("Unsupported parameter", "only the default (1) value is supported"), and the o-series
 * refuse `stop` too (providers.md §1.2). Routed there (by `auto`, or a fallback) such a request could
 * only fail upstream.
 */
const OPENAI_REASONING: readonly ChatRule[] = [
  {
    param: 'temperature',
    refused: (r) => r.temperature != null && r.temperature !== 1,
    why: 'takes only the default temperature (1)',
  },
  {
    param: 'top_p',
    refused: (r) => r.top_p != null && r.top_p !== 1,
    why: 'takes only the default top_p (1)',
  },
  { param: 'presence_penalty', refused: (r) => !!r.presence_penalty, why: 'has no penalties' },
  { param: 'frequency_penalty', refused: (r) => !!r.frequency_penalty, why: 'has no penalties' },
  { param: 'logprobs', refused: (r) => r.logprobs === true, why: 'returns no log probabilities' },
  { param: 'top_logprobs', refused: (r) => r.top_logprobs != null, why: 'returns no log probabilities' },
  { param: 'logit_bias', refused: (r) => has(r.logit_bias), why: 'has no logit bias' },
];
const O_SERIES_STOP: ChatRule = {
  param: 'stop',
  refused: (r) => stops(r) > 0,
  why: 'takes no stop sequences',
};
/** The o-series take low, medium and high (`minimal` is GPT-5's; `none`, `xhigh`, `max` later models'). */
const O_SERIES_EFFORTS: ChatRule = {
  param: 'reasoning_effort',
  refused: (r) => r.reasoning_effort != null && !['low', 'medium', 'high'].includes(r.reasoning_effort),
  why: "takes a reasoning effort of 'low', 'medium' or 'high' only",
};

/**
 * The first chat parameter one model cannot honour beyond its protocol's (`chatRefusal`), from what
 * the catalog says of it, or undefined: OpenAI's reasoning models and their sampling parameters.
 */
export function modelRefusal(
  kind: string,
  model: { provider: string; id: string; capabilities: readonly string[] },
  req: ChatRequest,
): Refusal | undefined {
  if (kind !== 'openai') return undefined;
  if (!model.capabilities.includes('reasoning')) {
    // GPT-5's answer length hint: OpenAI refuses it on the models before (gpt-4o, gpt-4.1).
    if (req.verbosity != null)
      return {
        param: 'verbosity',
        message: `'verbosity' is not supported by ${model.provider}/${model.id}: it is GPT-5's (reasoning models') answer length setting.`,
      };
    return undefined;
  }
  // GPT-5.1 and later at reasoning effort `none` take the sampling parameters (OpenAI's guide).
  const rules = /^o\d/.test(model.id)
    ? [...OPENAI_REASONING, O_SERIES_STOP, O_SERIES_EFFORTS]
    : req.reasoning_effort === 'none'
      ? []
      : OPENAI_REASONING;
  for (const rule of rules) {
    if (rule.refused(req)) {
      return {
        param: rule.param,
        message: `'${rule.param}' is not supported by ${model.provider}/${model.id}: it is a reasoning model and ${rule.why}.`,
      };
    }
  }
  return undefined;
}

/** Embeddings per protocol: whether it has them, token-array input, `user`, and its most inputs. */
interface EmbeddingsSupport {
  tokenInput: boolean;
  user: boolean;
  maxInputs: number;
}

const EMBEDDINGS: Record<ProtocolKind, EmbeddingsSupport | undefined> = {
  openai: { tokenInput: true, user: true, maxInputs: 2048 },
  anthropic: undefined,
  gemini: { tokenInput: false, user: false, maxInputs: 100 },
  // Ollama takes text only; vLLM takes token ids too, but the protocol cannot tell them apart.
  'openai-compatible': { tokenInput: false, user: true, maxInputs: 2048 },
};

/** Whether a protocol has an embeddings API at all. */
export const hasEmbeddings = (kind: string): boolean =>
  Object.hasOwn(EMBEDDINGS, kind) && EMBEDDINGS[kind as ProtocolKind] !== undefined;

/**
 * `dimensions` the embedding model `name` cannot give (its catalog vector size: above it, or any on
 * a model that does not shorten), or undefined; a model of unknown size takes what it is sent.
 */
export function dimensionsRefusal(
  size: { max: number; settable: boolean } | undefined,
  name: string,
  req: Pick<EmbeddingsRequest, 'dimensions'>,
): Refusal | undefined {
  const d = req.dimensions;
  if (d === undefined || size === undefined) return undefined;
  if (!size.settable)
    return {
      param: 'dimensions',
      message: `'dimensions' is not supported by ${name}: its vectors always have ${size.max} dimensions.`,
    };
  if (d > size.max)
    return {
      param: 'dimensions',
      message: `'dimensions' can be at most ${size.max} for ${name} (got ${d}).`,
    };
  return undefined;
}

/** The first thing of an embeddings request `provider` (speaking `kind`) cannot do, or undefined. */
export function embeddingsRefusal(
  kind: string,
  provider: string,
  req: EmbeddingsRequest,
): Refusal | undefined {
  const s = Object.hasOwn(EMBEDDINGS, kind) ? EMBEDDINGS[kind as ProtocolKind] : undefined;
  if (!s)
    return {
      param: 'model',
      message: `${provider} has no embeddings API: use an embedding model of another provider.`,
    };
  const input = req.input;
  const tokens = Array.isArray(input) && input.length > 0 && typeof input[0] !== 'string';
  if (tokens && !s.tokenInput) {
    return { param: 'input', message: `'input' as token arrays is not supported by ${provider}: send text.` };
  }
  const count = typeof input === 'string' || (tokens && typeof input[0] === 'number') ? 1 : input.length;
  if (count > s.maxInputs) {
    return {
      param: 'input',
      message: `${provider} embeds at most ${s.maxInputs} inputs per request (got ${count}).`,
    };
  }
  if (req.user !== undefined && !s.user) {
    return { param: 'user', message: `'user' is not supported by ${provider}: it has no end-user field.` };
  }
  return undefined;
}
