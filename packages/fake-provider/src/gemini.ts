import type { IncomingMessage } from 'node:http';
import type { Conversation, ToolSpec } from './content.ts';
import {
  chunkPieces,
  type ErrorKind,
  type Parsed,
  padding,
  type Protocol,
  type RenderCtx,
  type SseEvent,
} from './protocol.ts';
import { protoDuration } from './rate-limit.ts';

const OVERLOADED = 'The model is overloaded. Please try again later.';

/**
 * Gemini generateContent v1beta (providers.md §3): Google RPC errors, cumulative usageMetadata in every
 * chunk, SSE only with `alt=sse` (a JSON array otherwise), no rate-limit headers.
 */
export function geminiProtocol(): Protocol {
  function error(e: ErrorKind) {
    const out = (code: number, status: string, message: string, details?: unknown[]) => ({
      status: code,
      body: JSON.stringify({ error: { code, message, status, ...(details ? { details } : {}) } }),
    });
    switch (e.kind) {
      case 'auth_missing':
        return out(
          403,
          'PERMISSION_DENIED',
          "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.",
        );
      case 'auth_bad':
        return out(400, 'INVALID_ARGUMENT', 'API key not valid. Please pass a valid API key.', [
          {
            '@type': 'type.googleapis.com/google.rpc.ErrorInfo',
            reason: 'API_KEY_INVALID',
            domain: 'googleapis.com',
            metadata: { service: 'generativelanguage.googleapis.com' },
          },
        ]);
      case 'bad_request':
        return out(400, 'INVALID_ARGUMENT', e.message);
      case 'model_not_found':
        return out(
          404,
          'NOT_FOUND',
          `models/${e.model} is not found for API version v1beta, or is not supported for generateContent. Call ListModels to see the list of available models and their supported methods.`,
        );
      case 'not_found':
        return out(404, 'NOT_FOUND', e.message);
      case 'request_too_large':
        // (Only OpenAI's fake sends it.)
        return out(
          429,
          'RESOURCE_EXHAUSTED',
          'You exceeded your current quota, please check your plan and billing details. For more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.',
        );
      case 'rate_limit': {
        const delay = protoDuration(e.retryAfterMs);
        return out(
          429,
          'RESOURCE_EXHAUSTED',
          `You exceeded your current quota, please check your plan and billing details. For more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits. Please retry in ${delay}.`,
          [
            {
              '@type': 'type.googleapis.com/google.rpc.QuotaFailure',
              violations: [
                {
                  quotaMetric: 'generativelanguage.googleapis.com/generate_content_requests',
                  quotaId: 'GenerateRequestsPerMinutePerProjectPerModel',
                  quotaDimensions: { location: 'global', model: e.model },
                  quotaValue: String(e.limit),
                },
              ],
            },
            {
              '@type': 'type.googleapis.com/google.rpc.Help',
              links: [
                {
                  description: 'Learn more about Gemini API quotas',
                  url: 'https://ai.google.dev/gemini-api/docs/rate-limits',
                },
              ],
            },
            { '@type': 'type.googleapis.com/google.rpc.RetryInfo', retryDelay: delay },
          ],
        );
      }
      case 'server':
        return out(
          500,
          'INTERNAL',
          'An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting',
        );
      case 'unavailable':
      case 'overloaded':
        return out(503, 'UNAVAILABLE', OVERLOADED);
      case 'context_length':
        return out(
          400,
          'INVALID_ARGUMENT',
          `The input token count (${e.tokens}) exceeds the maximum number of tokens allowed (${e.limit}).`,
        );
    }
  }

  /** One response object; `produced` is the cumulative visible output so far. */
  const chunk = (c: RenderCtx, parts: unknown[], produced: number, final: boolean, extra = '') => {
    const r = c.reply;
    const candidate: Record<string, unknown> = { content: { parts, role: 'model' } };
    if (final) {
      candidate.finishReason = r.finish === 'length' ? 'MAX_TOKENS' : 'STOP';
      if (r.tool) candidate.finishMessage = 'Model generated function call(s).';
    }
    candidate.index = 0;
    const json = JSON.stringify({
      candidates: [candidate],
      usageMetadata: usageMetadata(c, produced),
      modelVersion: c.model,
      responseId: c.id,
    });
    return extra ? `${json.slice(0, -1)}${extra}}` : json;
  };

  /** A tool answer's functionCall parts (several with the `calls` directive: parallel calls). */
  const callParts = (t: NonNullable<RenderCtx['reply']['tool']>) =>
    Array.from({ length: t.count }, () => ({ functionCall: { name: t.name, args: t.args } }));

  const frame = (c: RenderCtx, json: string, first: boolean) =>
    c.parsed.sse ? `data: ${json}\r\n\r\n` : `${first ? '[' : ',\r\n'}${json}`;

  return {
    id: 'gemini',
    auth(req: IncomingMessage, url: URL) {
      const key = (req.headers['x-goog-api-key'] as string | undefined) || url.searchParams.get('key');
      if (!key) return { kind: 'auth_missing' };
      if (key === 'bad-key') return { kind: 'auth_bad' };
      return undefined;
    },
    parse: parseGenerate,
    error: (e) => error(e),
    headers: () => ({}),
    reportedModel: (_requested, served) => served,
    json(c) {
      const r = c.reply;
      const parts = [
        ...thoughtParts(c, r.thinking ?? []),
        ...(r.tool ? callParts(r.tool) : [{ text: r.pieces.join('') }]),
      ];
      return chunk(c, parts, r.completionTokens - r.reasoningTokens, true);
    },
    stream(c) {
      const r = c.reply;
      const out: SseEvent[] = [];
      // The thoughts first, in chunks of their own (no visible output yet).
      const thoughts =
        thoughtParts(c, r.thinking ?? []).length > 0
          ? chunkPieces(r.thinking ?? [], c.config.tokensPerChunk)
          : [];
      thoughts.forEach((g, i) => {
        out.push({
          text: frame(c, chunk(c, [{ text: g.join(''), thought: true }], 0, false), i === 0),
          tokens: g.length,
        });
      });
      const first = thoughts.length === 0;
      if (r.tool) {
        // Gemini sends a function call whole, in one chunk.
        const parts = callParts(r.tool);
        // Every call's arguments are output (parallel calls: `count` of them), as the JSON answer counts.
        const produced = r.tool.argPieces.length * r.tool.count;
        out.push({ text: frame(c, chunk(c, parts, produced, true), first), tokens: produced });
      } else {
        const groups = chunkPieces(r.pieces, c.config.tokensPerChunk);
        if (groups.length === 0) groups.push([]);
        let produced = 0;
        groups.forEach((g, i) => {
          produced += g.length;
          const json = chunk(c, [{ text: g.join('') }], produced, i === groups.length - 1);
          out.push({ text: frame(c, json, first && i === 0), tokens: g.length });
        });
      }
      if (!c.parsed.sse) out.push({ text: ']', tokens: 0 });
      return out;
    },
    streamContentType: (p: Parsed) => (p.sse ? 'text/event-stream' : 'application/json; charset=UTF-8'),
    malformedEvent: (c) =>
      c.parsed.sse
        ? 'data: {"candidates": [{"content": {"parts": [{"text": \r\n\r\n'
        : ',\r\n{"candidates": [{',
    // js-genai recognises a mid-stream error only as a bare JSON error object in its own network chunk.
    inbandErrorEvent: () =>
      JSON.stringify({ error: { code: 503, message: OVERLOADED, status: 'UNAVAILABLE' } }),
    hugeEvent: (c, bytes) =>
      frame(c, chunk(c, [{ text: '' }], 0, false, `,"fakePadding":"${padding(bytes)}"`), false),
    // js-genai only reads events that start with `data:`; other SSE clients must skip unknown event names.
    unknownEvent: (c) =>
      c.parsed.sse ? 'event: fake_unknown_event\r\ndata: {"fake":"unknown"}\r\n\r\n' : '',
    inbandAsStatus: { kind: 'unavailable' },
  };
}

/** The answer's thoughts as Gemini returns them (`thought: true`), only when the request asked. */
function thoughtParts(c: RenderCtx, thinking: string[]): Array<{ text: string; thought: true }> {
  if (thinking.length === 0 || c.parsed.conversation.thoughtsHidden) return [];
  return [{ text: thinking.join(''), thought: true }];
}

/** Gemini's `candidatesTokenCount` excludes thoughts; `totalTokenCount` includes them. */
function usageMetadata(c: RenderCtx, candidates: number) {
  const r = c.reply;
  return {
    promptTokenCount: r.promptTokens,
    candidatesTokenCount: candidates,
    totalTokenCount: r.promptTokens + candidates + r.reasoningTokens,
    ...(r.cachedTokens > 0 ? { cachedContentTokenCount: r.cachedTokens } : {}),
    ...(r.reasoningTokens > 0 ? { thoughtsTokenCount: r.reasoningTokens } : {}),
    promptTokensDetails: [{ modality: 'TEXT', tokenCount: r.promptTokens }],
  };
}

interface GenerateBody {
  contents?: unknown;
  systemInstruction?: { parts?: unknown };
  tools?: Array<{
    functionDeclarations?: Array<{ name?: unknown; parameters?: unknown; parametersJsonSchema?: unknown }>;
  }>;
  toolConfig?: { functionCallingConfig?: { mode?: string; allowedFunctionNames?: string[] } };
  generationConfig?: {
    thinkingConfig?: { thinkingBudget?: unknown; includeThoughts?: unknown };
    maxOutputTokens?: unknown;
    stopSequences?: unknown;
    responseMimeType?: unknown;
    responseSchema?: unknown;
    responseJsonSchema?: unknown;
  };
}

function partsText(parts: unknown): { text: string; hasResponse: boolean } {
  let text = '';
  let hasResponse = false;
  if (Array.isArray(parts)) {
    for (const p of parts as Array<Record<string, unknown>>) {
      if (typeof p?.text === 'string') text += p.text;
      else if (p?.functionCall) text += JSON.stringify(p.functionCall);
      else if (p?.functionResponse) {
        hasResponse = true;
        text += JSON.stringify(p.functionResponse);
      }
    }
  }
  return { text, hasResponse };
}

function parseGenerate(raw: unknown, url: URL, pathModel: string | undefined): Parsed | ErrorKind {
  if (!raw || typeof raw !== 'object')
    return { kind: 'bad_request', message: 'Invalid JSON payload received.' };
  const b = raw as GenerateBody;
  if (!Array.isArray(b.contents) || b.contents.length === 0) {
    return { kind: 'bad_request', message: '* GenerateContentRequest.contents: contents is not specified\n' };
  }
  const texts: string[] = [];
  const system = partsText(b.systemInstruction?.parts).text;
  if (system) texts.push(system);
  let lastUserText = '';
  let endsWithUserText = false;
  for (const c of b.contents as Array<{ role?: string; parts?: unknown }>) {
    const { text, hasResponse } = partsText(c?.parts);
    texts.push(text);
    const user = (c?.role ?? 'user') === 'user';
    if (user && !hasResponse) lastUserText = text;
    endsWithUserText = user && !hasResponse;
  }
  const tools: ToolSpec[] = [];
  for (const t of Array.isArray(b.tools) ? b.tools : []) {
    for (const f of t?.functionDeclarations ?? []) {
      if (typeof f?.name === 'string')
        tools.push({ name: f.name, parameters: f.parameters ?? f.parametersJsonSchema });
    }
  }
  const fc = b.toolConfig?.functionCallingConfig;
  const max = b.generationConfig?.maxOutputTokens;
  const stop = b.generationConfig?.stopSequences;
  // It thinks when given a budget; its thoughts come back only with includeThoughts (billed either way).
  const thinkingConfig = b.generationConfig?.thinkingConfig;
  const budget = thinkingConfig?.thinkingBudget;
  const thinking = typeof budget === 'number' && budget > 0;
  const conversation: Conversation = {
    texts,
    lastUserText,
    endsWithUserText,
    tools,
    toolMode: fc?.mode === 'NONE' ? 'none' : fc?.mode === 'ANY' ? 'forced' : 'auto',
    forcedTool: fc?.mode === 'ANY' ? fc.allowedFunctionNames?.[0] : undefined,
    toolChars: tools.length > 0 ? JSON.stringify(b.tools).length : 0,
    maxTokens: typeof max === 'number' ? max : undefined,
    ...(thinking ? { thinking: true, thoughtsHidden: thinkingConfig?.includeThoughts !== true } : {}),
    // Gemini stops before a stop sequence too, and says only STOP (not which one).
    ...(Array.isArray(stop) ? { stop: stop.filter((x): x is string => typeof x === 'string') } : {}),
    // JSON mode (providers.md §3.2): an instance of the schema given, either form.
    ...(b.generationConfig?.responseMimeType === 'application/json'
      ? { json: { schema: b.generationConfig.responseJsonSchema ?? b.generationConfig.responseSchema } }
      : {}),
  };
  return {
    model: pathModel ?? '',
    stream: url.pathname.endsWith(':streamGenerateContent'),
    includeUsage: false,
    sse: url.searchParams.get('alt') === 'sse',
    conversation,
  };
}
