import type { Conversation, ReplyChoice, ToolSpec } from './content.ts';
import { textOf, tokenLogprob } from './content.ts';
import { bearer } from './http.ts';
import { ollamaError, openAIError } from './openai-errors.ts';
import { goDuration } from './rate-limit.ts';
import {
  chunkPieces,
  type ErrorKind,
  type Parsed,
  padding,
  type Protocol,
  type RenderCtx,
  type SseEvent,
} from './protocol.ts';

/**
 * OpenAI Chat Completions, and the Ollama flavour of it (`llama`): no auth, `fp_ollama`, error `type` by
 * status, no rate-limit headers (providers.md §1, §4.1).
 */
export function openAIProtocol(flavour: 'openai' | 'llama'): Protocol {
  const ollama = flavour === 'llama';
  const fingerprint = ollama ? 'fp_ollama' : 'fp_f4ke00c0de';

  const chunkHead = (c: RenderCtx) =>
    `{"id":"chatcmpl-${c.id}","object":"chat.completion.chunk","created":${c.created},"model":${JSON.stringify(c.model)},"system_fingerprint":"${fingerprint}","choices":`;
  const usageTail = (c: RenderCtx) => (c.parsed.includeUsage ? ',"usage":null}' : '}');
  const choice = (delta: unknown, finish: string | null, index = 0, logprobs: unknown = null) =>
    `[{"index":${index},"delta":${JSON.stringify(delta)},"logprobs":${JSON.stringify(logprobs)},"finish_reason":${finish ? `"${finish}"` : 'null'}}]`;
  const event = (c: RenderCtx, choices: string, tokens = 0): SseEvent => ({
    text: `data: ${chunkHead(c)}${choices}${usageTail(c)}\n\n`,
    tokens,
  });

  return {
    id: flavour,
    auth(req) {
      if (ollama) return undefined;
      const key = bearer(req);
      if (!key) return { kind: 'auth_missing' };
      if (key === 'bad-key') return { kind: 'auth_bad' };
      return undefined;
    },
    parse: (raw) => parseChat(raw, ollama),
    error: (e) => (ollama ? ollamaError(e) : openAIError(e)),
    headers(requestId, limits, config): Record<string, string> {
      if (ollama) return {};
      const { requests, tokens } = limits;
      return {
        'x-request-id': requestId,
        'openai-version': '2020-10-01',
        'openai-organization': 'org-fake',
        'openai-processing-ms': String(config.firstByteMs),
        'x-ratelimit-limit-requests': String(requests.capacity),
        'x-ratelimit-limit-tokens': String(tokens.capacity),
        'x-ratelimit-remaining-requests': String(requests.remaining()),
        'x-ratelimit-remaining-tokens': String(tokens.remaining()),
        'x-ratelimit-reset-requests': goDuration(requests.resetMs()),
        'x-ratelimit-reset-tokens': goDuration(tokens.resetMs()),
      };
    },
    reportedModel: (requested) => requested,
    json(c) {
      const r = c.reply;
      const lp = c.parsed.logprobs;
      const message = (ch: ReplyChoice, i: number) => {
        const base = ch.tool
          ? {
              role: 'assistant',
              content: null,
              // Parallel calls (directive `calls`; one when the request turned them off).
              tool_calls: Array.from({ length: ch.tool.count }, (_, k) => ({
                id: callId(c.id, i, k),
                type: 'function',
                function: { name: ch.tool?.name, arguments: ch.tool?.argsJson },
              })),
              refusal: null,
              annotations: [],
            }
          : { role: 'assistant', content: ch.pieces.join(''), refusal: null, annotations: [] };
        // Ollama returns a reasoning model's thinking in a `reasoning` field of its own.
        return ollama && r.thinking && i === 0 ? { ...base, reasoning: r.thinking.join('') } : base;
      };
      return JSON.stringify({
        id: `chatcmpl-${c.id}`,
        object: 'chat.completion',
        created: c.created,
        model: c.model,
        choices: [r, ...r.more].map((ch, index) => ({
          index,
          message: message(ch, index),
          logprobs: lp ? { content: ch.tool ? null : logprobsOf(ch.pieces, 0, lp.top), refusal: null } : null,
          finish_reason: finishReason(ch.finish),
        })),
        usage: usage(c),
        service_tier: ollama ? undefined : 'default',
        system_fingerprint: fingerprint,
      });
    },
    stream(c) {
      const r = c.reply;
      const lp = c.parsed.logprobs;
      // Each choice's chunks in order; several choices (n > 1) interleave, as OpenAI sends them.
      const perChoice = [r, ...r.more].map((ch, i) => {
        const out: SseEvent[] = [];
        if (ch.tool) {
          const t = ch.tool;
          for (let k = 0; k < t.count; k++) {
            const head = {
              index: k,
              id: callId(c.id, i, k),
              type: 'function',
              function: { name: t.name, arguments: '' },
            };
            out.push(
              event(
                c,
                choice(
                  k === 0 ? { role: 'assistant', content: null, tool_calls: [head] } : { tool_calls: [head] },
                  null,
                  i,
                ),
              ),
            );
            for (const piece of t.argPieces) {
              out.push(
                event(c, choice({ tool_calls: [{ index: k, function: { arguments: piece } }] }, null, i), 1),
              );
            }
          }
        } else {
          out.push(event(c, choice({ role: 'assistant', content: '', refusal: null }, null, i)));
          if (ollama && r.thinking && i === 0) {
            for (const group of chunkPieces(r.thinking, c.config.tokensPerChunk)) {
              // Counted with the reply's reasoning before the stream (generate.ts), not again here.
              out.push(event(c, choice({ reasoning: group.join('') }, null, i), 0));
            }
          }
          let at = 0;
          for (const group of chunkPieces(ch.pieces, c.config.tokensPerChunk)) {
            const logprobs = lp ? { content: logprobsOf(group, at, lp.top), refusal: null } : null;
            at += group.length;
            out.push(event(c, choice({ content: group.join('') }, null, i, logprobs), group.length));
          }
        }
        out.push(event(c, choice({}, finishReason(ch.finish), i)));
        return out;
      });
      const out: SseEvent[] = [];
      const longest = Math.max(...perChoice.map((x) => x.length));
      for (let k = 0; k < longest; k++)
        for (const x of perChoice) if (k < x.length) out.push(x[k] as SseEvent);
      if (c.parsed.includeUsage) {
        out.push({ text: `data: ${chunkHead(c)}[],"usage":${JSON.stringify(usage(c))}}\n\n`, tokens: 0 });
      }
      out.push({ text: 'data: [DONE]\n\n', tokens: 0 });
      return out;
    },
    streamContentType: () => 'text/event-stream; charset=utf-8',
    malformedEvent: (c) => `data: ${chunkHead(c)}[{"index":0,"delta":{"content":\n\n`,
    inbandErrorEvent: () =>
      `data: ${JSON.stringify({ error: { message: 'The server had an error while processing your request. Sorry about that!', type: 'server_error', param: null, code: null } })}\n\n`,
    // `obfuscation` is a real padding field clients must ignore, so only the line length is unusual.
    hugeEvent: (c, bytes) =>
      `data: ${chunkHead(c)}${choice({ content: '' }, null)},"obfuscation":"${padding(bytes)}"${usageTail(c)}\n\n`,
    // Comment lines are how OpenAI-compatible servers (OpenRouter, proxies) interleave keep-alives.
    unknownEvent: () => ': OPENROUTER PROCESSING\n\n',
    inbandAsStatus: { kind: 'server' },
  };
}

/** Choice 0's call id is `call_<id>` (as before `n`); choice i's adds `_<i>`. */
const callId = (id: string, choice: number, k = 0) =>
  `${choice === 0 ? `call_${id}` : `call_${id}_${choice}`}${k === 0 ? '' : `_p${k}`}`;

/** Alternatives a `top_logprobs` list offers after the chosen token. */
const ALTERNATIVES = [' the', ' a', ',', '.', ' and', ' of', ' to', ' in', ' is', ' it'];

/**
 * OpenAI's `logprobs.content`: one entry per token, with its UTF-8 bytes and `top_logprobs` of
 * `top` entries, the chosen token first (the most likely), then less likely alternatives.
 */
function logprobsOf(pieces: string[], from: number, top: number) {
  return pieces.map((token, k) => {
    const logprob = tokenLogprob(token, from + k);
    const entry = (t: string, l: number) => ({ token: t, logprob: l, bytes: [...Buffer.from(t, 'utf8')] });
    const alts = ALTERNATIVES.filter((a) => a !== token).slice(0, Math.max(0, top - 1));
    return {
      ...entry(token, logprob),
      top_logprobs:
        top > 0 ? [entry(token, logprob), ...alts.map((a, j) => entry(a, logprob - 1 - j * 0.5))] : [],
    };
  });
}

function finishReason(f: 'stop' | 'length' | 'tool'): string {
  return f === 'tool' ? 'tool_calls' : f;
}

function usage(c: RenderCtx) {
  const r = c.reply;
  return {
    prompt_tokens: r.promptTokens,
    completion_tokens: r.completionTokens,
    total_tokens: r.promptTokens + r.completionTokens,
    prompt_tokens_details: { cached_tokens: r.cachedTokens, audio_tokens: 0 },
    completion_tokens_details: {
      reasoning_tokens: r.reasoningTokens,
      audio_tokens: 0,
      accepted_prediction_tokens: r.prediction?.accepted ?? 0,
      rejected_prediction_tokens: r.prediction?.rejected ?? 0,
    },
  };
}

interface ChatBody {
  model?: unknown;
  messages?: unknown;
  stream?: unknown;
  stream_options?: { include_usage?: unknown } | null;
  max_tokens?: unknown;
  max_completion_tokens?: unknown;
  tools?: unknown;
  tool_choice?: unknown;
  stop?: unknown;
  n?: unknown;
  logprobs?: unknown;
  top_logprobs?: unknown;
  reasoning_effort?: unknown;
  parallel_tool_calls?: unknown;
  response_format?: { type?: unknown; json_schema?: { schema?: unknown } } | null;
}

function parseChat(raw: unknown, ollama: boolean): Parsed | ErrorKind {
  if (!raw || typeof raw !== 'object')
    return { kind: 'bad_request', message: 'The request body must be a JSON object.' };
  const b = raw as ChatBody;
  if (typeof b.model !== 'string' || b.model === '') {
    return { kind: 'bad_request', message: 'you must provide a model parameter', param: 'model' };
  }
  if (!Array.isArray(b.messages) || b.messages.length === 0) {
    return {
      kind: 'bad_request',
      message: "Invalid 'messages': empty array. Expected an array with minimum length 1.",
      param: 'messages',
    };
  }
  const texts: string[] = [];
  let lastUserText = '';
  let lastRole = '';
  for (const m of b.messages as Array<Record<string, unknown>>) {
    const role = String(m?.role ?? '');
    let t = textOf(m?.content);
    if (Array.isArray(m?.tool_calls)) t += JSON.stringify(m.tool_calls);
    texts.push(t);
    if (role === 'user') lastUserText = textOf(m.content);
    lastRole = role;
  }
  const tools: ToolSpec[] = [];
  if (Array.isArray(b.tools)) {
    for (const t of b.tools as Array<{ function?: { name?: unknown; parameters?: unknown } }>) {
      if (typeof t?.function?.name === 'string')
        tools.push({ name: t.function.name, parameters: t.function.parameters });
    }
  }
  if (!ollama) {
    const refused = reasoningModelRefusal(b as ChatBody & Record<string, unknown>);
    if (refused) return refused;
  }
  // n, logprobs and top_logprobs as OpenAI validates them.
  const n = b.n ?? 1;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > 128)
    return { kind: 'bad_request', message: `Invalid 'n': integer between 1 and 128 expected.`, param: 'n' };
  const top = b.top_logprobs ?? undefined;
  if (top !== undefined && (typeof top !== 'number' || !Number.isInteger(top) || top < 0 || top > 20))
    return {
      kind: 'bad_request',
      message: `Invalid 'top_logprobs': integer between 0 and 20 expected.`,
      param: 'top_logprobs',
    };
  if (top !== undefined && b.logprobs !== true)
    return {
      kind: 'bad_request',
      message: "Invalid value for 'top_logprobs': logprobs must be set to true if top_logprobs is used.",
      param: 'top_logprobs',
    };
  // Structured output (providers.md §1.2): json_object needs the word "json" in the messages, as OpenAI checks.
  const format = b.response_format?.type;
  if (format === 'json_object' && !texts.some((t) => /json/i.test(t)))
    return {
      kind: 'bad_request',
      message:
        "'messages' must contain the word 'json' in some form, to use 'response_format' of type 'json_object'.",
      param: 'messages',
    };
  const json =
    format === 'json_schema'
      ? { schema: b.response_format?.json_schema?.schema ?? { type: 'object' } }
      : format === 'json_object'
        ? {}
        : undefined;
  const stop =
    typeof b.stop === 'string'
      ? [b.stop]
      : Array.isArray(b.stop)
        ? b.stop.filter((x) => typeof x === 'string')
        : undefined;
  const choice = b.tool_choice as string | { function?: { name?: string } } | undefined;
  const maxTokens = numberOr(b.max_completion_tokens) ?? numberOr(b.max_tokens);
  // Predicted Outputs (OpenAI's, not Ollama's): the text is counted against the answer.
  const prediction = (b as { prediction?: { type?: unknown; content?: unknown } | null }).prediction;
  const predicted = !ollama && prediction?.type === 'content' ? textOf(prediction.content) : undefined;
  const conversation: Conversation = {
    texts,
    lastUserText,
    endsWithUserText: lastRole === 'user',
    tools,
    toolMode:
      choice === 'none' ? 'none' : choice === 'required' || typeof choice === 'object' ? 'forced' : 'auto',
    forcedTool: typeof choice === 'object' ? choice?.function?.name : undefined,
    toolChars: tools.length > 0 ? JSON.stringify(b.tools).length : 0,
    maxTokens,
    ...(stop?.length ? { stop } : {}),
    // Ollama ignores n and logprobs (providers.md §4.1).
    choices: ollama ? 1 : n,
    // Thinking text is only ever returned by the Ollama flavour (OpenAI's chat API returns none).
    thinking: ollama && typeof b.reasoning_effort === 'string' && b.reasoning_effort !== 'none',
    ...(json ? { json } : {}),
    ...(b.parallel_tool_calls === false ? { parallelToolCalls: false } : {}),
    ...(predicted !== undefined ? { prediction: predicted } : {}),
  };
  return {
    model: b.model,
    stream: b.stream === true,
    includeUsage: b.stream_options?.include_usage === true,
    ...(b.logprobs === true && !ollama ? { logprobs: { top: top ?? 0 } } : {}),
    sse: true,
    conversation,
  };
}

/**
 * OpenAI's reasoning models (o-series, GPT-5) refuse sampling parameters, as the real API does
 * (providers.md §1.2): a non-default temperature or top_p, penalties, logprobs, logit_bias,
 * `max_tokens` (they take max_completion_tokens), and on the o-series `stop`.
 */
function reasoningModelRefusal(b: ChatBody & Record<string, unknown>): ErrorKind | undefined {
  const model = String(b.model);
  if (!/^(o\d|gpt-5)/.test(model)) return undefined;
  const unsupportedValue = (param: string, v: unknown) => ({
    kind: 'bad_request' as const,
    message: `Unsupported value: '${param}' does not support ${JSON.stringify(v)} with this model. Only the default (1) value is supported.`,
    param,
  });
  const unsupported = (param: string, extra = '') => ({
    kind: 'bad_request' as const,
    message: `Unsupported parameter: '${param}' is not supported with this model.${extra}`,
    param,
  });
  for (const p of ['temperature', 'top_p'] as const) {
    const v = b[p];
    if (v !== undefined && v !== null && v !== 1) return unsupportedValue(p, v);
  }
  if (b.max_tokens !== undefined && b.max_tokens !== null)
    return unsupported('max_tokens', " Use 'max_completion_tokens' instead.");
  for (const p of ['presence_penalty', 'frequency_penalty'] as const)
    if (b[p] !== undefined && b[p] !== null && b[p] !== 0) return unsupported(p);
  if (b.logprobs === true) return unsupported('logprobs');
  if (b.top_logprobs !== undefined && b.top_logprobs !== null) return unsupported('top_logprobs');
  if (b.logit_bias && typeof b.logit_bias === 'object' && Object.keys(b.logit_bias).length > 0)
    return unsupported('logit_bias');
  if (/^o\d/.test(model) && b.stop !== undefined && b.stop !== null) return unsupported('stop');
  return undefined;
}

function numberOr(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}
