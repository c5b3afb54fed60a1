import {
  type ChatMessage,
  type ChatRequest,
  type ContentPart,
  requestedMaxTokens,
} from '@faregate/contracts/chat';
import { isHttpUrl, mimeFromUrl, parseArguments, parseDataUrl, stopList, textOf } from '../shared/content.ts';
import { chatRefusal } from '@faregate/catalog/capabilities';
import { invalidParam } from '../shared/errors.ts';
import type { BuildOptions, UpstreamRequest } from '../types.ts';

type Part = Record<string, unknown>;
interface GeminiContent {
  role: 'user' | 'model';
  parts: Part[];
}

/**
 * Thinking budgets for OpenAI's reasoning_effort (`none` and `minimal` = 0: no thinking where the
 * model allows it), within the model's range (`thinkingRange`).
 */
const THINKING_BUDGET = {
  none: 0,
  minimal: 0,
  low: 1024,
  medium: 8192,
  high: 24576,
  xhigh: 32768,
  max: 32768,
} as const;

/**
 * The thinking budgets a Gemini model takes: 2.5 Pro thinks always (128 to 32,768), Flash and
 * Flash-Lite up to 24,576 and may not think at all (0).
 */
function thinkingRange(model: string): { min: number; max: number } {
  return /^gemini-2\.5-pro/.test(model) ? { min: 128, max: 32768 } : { min: 0, max: 24576 };
}

const AUDIO_MIME: Record<string, string> = { wav: 'audio/wav', mp3: 'audio/mp3' };

function partOf(p: ContentPart, param: string): Part {
  switch (p.type) {
    case 'text':
      return { text: p.text };
    case 'refusal':
      return { text: p.refusal };
    case 'image_url': {
      const url = p.image_url.url;
      const d = parseDataUrl(url);
      if (d) return { inlineData: { mimeType: d.mediaType, data: d.data } };
      if (isHttpUrl(url)) return { fileData: { mimeType: mimeFromUrl(url), fileUri: url } };
      throw invalidParam(param, 'image_url must be an http(s) URL or a base64 data: URL');
    }
    case 'input_audio':
      return {
        inlineData: {
          mimeType: AUDIO_MIME[p.input_audio.format] ?? `audio/${p.input_audio.format}`,
          data: p.input_audio.data,
        },
      };
    case 'file': {
      const d = p.file.file_data ? parseDataUrl(p.file.file_data) : undefined;
      if (d) return { inlineData: { mimeType: d.mediaType, data: d.data } };
      throw invalidParam(param, 'only inline file parts (file_data as a data: URL) are supported for Gemini');
    }
  }
}

function partsOf(content: Extract<ChatMessage, { role: 'user' }>['content'], param: string): Part[] {
  if (typeof content === 'string') return content === '' ? [] : [{ text: content }];
  return content.map((p) => partOf(p, param));
}

/** Gemini wants a JSON object as a function's response; plain text is wrapped as `{result}`. */
function responseObject(text: string): Record<string, unknown> {
  try {
    const v: unknown = JSON.parse(text);
    if (typeof v === 'object' && v !== null && !Array.isArray(v)) return v as Record<string, unknown>;
  } catch {
    // not JSON: wrap
  }
  return { result: text };
}

/**
 * OpenAI messages → Gemini `systemInstruction` + `contents` (roles user/model, same-role turns merged).
 * A tool result needs the function NAME: recovered from the assistant tool_calls by tool_call_id.
 */
export function translateMessages(messages: ChatMessage[]): { system: Part[]; contents: GeminiContent[] } {
  const system: Part[] = [];
  const contents: GeminiContent[] = [];
  const callNames = new Map<string, string>();
  const push = (role: GeminiContent['role'], parts: Part[]) => {
    if (parts.length === 0) return;
    const last = contents[contents.length - 1];
    if (last && last.role === role) last.parts.push(...parts);
    else contents.push({ role, parts });
  };
  messages.forEach((m, i) => {
    const param = `messages[${i}].content`;
    switch (m.role) {
      case 'system':
      case 'developer': {
        const text = textOf(m.content, param);
        if (text !== '') system.push({ text });
        break;
      }
      case 'user':
        push('user', partsOf(m.content, param));
        break;
      case 'assistant': {
        const parts = m.content == null ? [] : partsOf(m.content, param);
        for (const [j, tc] of (m.tool_calls ?? []).entries()) {
          callNames.set(tc.id, tc.function.name);
          parts.push({
            functionCall: {
              name: tc.function.name,
              args: parseArguments(tc.function.arguments, `messages.${i}.tool_calls.${j}.function.arguments`),
            },
          });
        }
        push('model', parts);
        break;
      }
      case 'tool': {
        const name = callNames.get(m.tool_call_id);
        if (name === undefined) {
          throw invalidParam(
            `messages[${i}].tool_call_id`,
            'tool_call_id does not match any earlier assistant tool call',
          );
        }
        push('user', [{ functionResponse: { name, response: responseObject(textOf(m.content, param)) } }]);
        break;
      }
    }
  });
  return { system, contents };
}

function toolConfigOf(req: ChatRequest): Record<string, unknown> | undefined {
  const c = req.tool_choice;
  if (c === undefined) return undefined;
  if (c === 'auto') return { functionCallingConfig: { mode: 'AUTO' } };
  if (c === 'none') return { functionCallingConfig: { mode: 'NONE' } };
  if (c === 'required') return { functionCallingConfig: { mode: 'ANY' } };
  return { functionCallingConfig: { mode: 'ANY', allowedFunctionNames: [c.function.name] } };
}

export function buildGeminiBody(
  req: ChatRequest,
  provider = 'gemini',
  /** The provider's model id (its thinking range). */
  model = '',
): Record<string, unknown> {
  // What Gemini cannot do (capabilities.ts; the ingress refuses it before queueing too).
  const refused = chatRefusal('gemini', provider, req);
  if (refused) throw invalidParam(refused.param, refused.message);
  const stop = stopList(req.stop);
  const { system, contents } = translateMessages(req.messages);
  const body: Record<string, unknown> = { contents };
  if (system.length > 0) body.systemInstruction = { parts: system };
  const gc: Record<string, unknown> = {};
  if (req.temperature != null) gc.temperature = req.temperature;
  if (req.top_p != null) gc.topP = req.top_p;
  if (req.top_k != null) gc.topK = req.top_k;
  const max = requestedMaxTokens(req);
  if (max !== undefined) gc.maxOutputTokens = max;
  if (stop) gc.stopSequences = stop;
  if (req.seed != null) gc.seed = req.seed;
  if (req.presence_penalty != null) gc.presencePenalty = req.presence_penalty;
  if (req.frequency_penalty != null) gc.frequencyPenalty = req.frequency_penalty;
  const rf = req.response_format;
  if (rf?.type === 'json_object') gc.responseMimeType = 'application/json';
  else if (rf?.type === 'json_schema') {
    gc.responseMimeType = 'application/json';
    if (rf.json_schema.schema) gc.responseJsonSchema = rf.json_schema.schema;
  }
  if (req.reasoning_effort) {
    // The Messages door's own budget, else the effort's, within what the model takes.
    const range = thinkingRange(model.replace(/^models\//, ''));
    const budget = req.thinking_budget ?? THINKING_BUDGET[req.reasoning_effort];
    const thinkingBudget = Math.min(Math.max(budget, range.min), range.max);
    // With its thoughts: Gemini returns them (as `thought` parts, read as the answer's reasoning)
    // only when asked, and bills them either way.
    gc.thinkingConfig = thinkingBudget > 0 ? { thinkingBudget, includeThoughts: true } : { thinkingBudget };
  }
  if (Object.keys(gc).length > 0) body.generationConfig = gc;
  if (req.tools && req.tools.length > 0) {
    // parallel_tool_calls has no Gemini counterpart: `false` is kept by the call (call.ts keeps the
    // first call only), `true` is what Gemini does anyway.
    body.tools = [
      {
        functionDeclarations: req.tools.map((t) => ({
          name: t.function.name,
          ...(t.function.description ? { description: t.function.description } : {}),
          ...(t.function.parameters ? { parametersJsonSchema: t.function.parameters } : {}),
        })),
      },
    ];
    const tc = toolConfigOf(req);
    if (tc) body.toolConfig = tc;
  }
  // user / store / metadata / service_tier: no Gemini counterpart, refused above (capabilities.ts).
  return body;
}

export const geminiUrl = (baseUrl: string, path: string) => baseUrl.replace(/\/+$/, '') + path;

/** The key goes in `x-goog-api-key`, never in the URL: URLs end up in logs. */
export function geminiHeaders(
  apiKey: string | undefined,
  extra?: Record<string, string>,
): Record<string, string> {
  return {
    'content-type': 'application/json',
    accept: 'application/json',
    ...(extra ?? {}),
    ...(apiKey ? { 'x-goog-api-key': apiKey } : {}),
  };
}

export function buildGeminiRequest(req: ChatRequest, opts: BuildOptions): UpstreamRequest {
  const model = encodeURIComponent(opts.model.replace(/^models\//, ''));
  const method = opts.stream ? 'streamGenerateContent?alt=sse' : 'generateContent';
  const headers = geminiHeaders(opts.apiKey, opts.config.headers);
  if (opts.stream) headers.accept = 'text/event-stream';
  return {
    method: 'POST',
    url: geminiUrl(opts.config.baseUrl, `/v1beta/models/${model}:${method}`),
    headers,
    body: JSON.stringify(buildGeminiBody(req, opts.config.id, opts.model)),
  };
}
