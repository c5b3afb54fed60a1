import type { Conversation, ToolSpec } from './content.ts';
import { textOf } from './content.ts';
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
  const choice = (delta: unknown, finish: string | null) =>
    `[{"index":0,"delta":${JSON.stringify(delta)},"logprobs":null,"finish_reason":${finish ? `"${finish}"` : 'null'}}]`;
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
    parse: parseChat,
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
      const message = r.tool
        ? {
            role: 'assistant',
            content: null,
            tool_calls: [
              {
                id: `call_${c.id}`,
                type: 'function',
                function: { name: r.tool.name, arguments: r.tool.argsJson },
              },
            ],
            refusal: null,
            annotations: [],
          }
        : { role: 'assistant', content: r.pieces.join(''), refusal: null, annotations: [] };
      return JSON.stringify({
        id: `chatcmpl-${c.id}`,
        object: 'chat.completion',
        created: c.created,
        model: c.model,
        choices: [{ index: 0, message, logprobs: null, finish_reason: finishReason(r.finish) }],
        usage: usage(c),
        service_tier: ollama ? undefined : 'default',
        system_fingerprint: fingerprint,
      });
    },
    stream(c) {
      const r = c.reply;
      const out: SseEvent[] = [];
      if (r.tool) {
        const t = r.tool;
        out.push(
          event(
            c,
            choice(
              {
                role: 'assistant',
                content: null,
                tool_calls: [
                  {
                    index: 0,
                    id: `call_${c.id}`,
                    type: 'function',
                    function: { name: t.name, arguments: '' },
                  },
                ],
              },
              null,
            ),
          ),
        );
        for (const piece of t.argPieces) {
          out.push(event(c, choice({ tool_calls: [{ index: 0, function: { arguments: piece } }] }, null), 1));
        }
      } else {
        out.push(event(c, choice({ role: 'assistant', content: '', refusal: null }, null)));
        for (const group of chunkPieces(r.pieces, c.config.tokensPerChunk)) {
          out.push(event(c, choice({ content: group.join('') }, null), group.length));
        }
      }
      out.push(event(c, choice({}, finishReason(r.finish))));
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
      accepted_prediction_tokens: 0,
      rejected_prediction_tokens: 0,
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
}

function parseChat(raw: unknown): Parsed | ErrorKind {
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
  const choice = b.tool_choice as string | { function?: { name?: string } } | undefined;
  const maxTokens = numberOr(b.max_completion_tokens) ?? numberOr(b.max_tokens);
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
  };
  return {
    model: b.model,
    stream: b.stream === true,
    includeUsage: b.stream_options?.include_usage === true,
    sse: true,
    conversation,
  };
}

function numberOr(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}
