import { type ChatMessage, type ChatRequest, requestedMaxTokens } from '@faregate/contracts/chat';
import { isHttpUrl } from '../shared/content.ts';
import { chatRefusal, unsupportedRefusal } from '@faregate/catalog/capabilities';
import { invalidParam } from '../shared/errors.ts';
import type { BuildOptions, UpstreamRequest } from '../types.ts';
import type { OpenAICompatibleQuirks } from './quirks.ts';

/** Join a base URL that already ends with its version segment (`…/v1`) and a path. */
export function joinUrl(baseUrl: string, path: string): string {
  return baseUrl.replace(/\/+$/, '') + path;
}

export function authHeaders(
  apiKey: string | undefined,
  quirks: OpenAICompatibleQuirks,
  extra?: Record<string, string>,
): Record<string, string> {
  const key = apiKey || quirks.placeholderKey;
  return {
    'content-type': 'application/json',
    accept: 'application/json',
    ...(extra ?? {}),
    ...(key ? { authorization: `Bearer ${key}` } : {}),
  };
}

const hasBreakpoint = (m: ChatMessage): boolean =>
  Array.isArray(m.content) && m.content.some((p) => 'cache_control' in p);

/** A message without Anthropic's caching breakpoints (`cache_control`), which these hosts refuse. */
function withoutBreakpoints(m: ChatMessage): ChatMessage {
  if (!hasBreakpoint(m) || !Array.isArray(m.content)) return m;
  return {
    ...m,
    content: m.content.map((p) => {
      if (!('cache_control' in p)) return p;
      const { cache_control: _anthropicOnly, ...rest } = p;
      return rest;
    }),
  } as ChatMessage;
}

function translateMessages(messages: ChatMessage[], q: OpenAICompatibleQuirks): unknown[] {
  // Copied only when a breakpoint is there to leave out (the common request passes as it is).
  if (messages.some(hasBreakpoint)) messages = messages.map(withoutBreakpoints);
  // Anthropic's thinking of an earlier turn (`thinking_blocks`) is Anthropic-signed: no OpenAI-protocol
  // host can take it back, so it is left out here (README, parameter table).
  const signed = messages.some((m) => m.role === 'assistant' && m.thinking_blocks);
  if (signed)
    messages = messages.map((m) => {
      if (m.role !== 'assistant' || !m.thinking_blocks) return m;
      const { thinking_blocks: _anthropicOnly, ...rest } = m;
      return rest;
    });
  if (!q.noDeveloperRole && !q.dataUrlImagesOnly) return messages;
  return messages.map((m) => {
    if (q.dataUrlImagesOnly && Array.isArray(m.content)) {
      for (const p of m.content) {
        if (p.type === 'image_url' && isHttpUrl(p.image_url.url)) {
          throw invalidParam('messages', 'this provider accepts only base64 data: URLs for images');
        }
      }
    }
    if (q.noDeveloperRole && m.role === 'developer') return { ...m, role: 'system' };
    return m;
  });
}

/** The Chat Completions body, built from an allow-list (nothing tenant-controlled slips through). */
export function buildChatBody(
  req: ChatRequest,
  opts: BuildOptions,
  q: OpenAICompatibleQuirks,
): Record<string, unknown> {
  // What the protocol cannot do (capabilities.ts; the ingress refuses it before queueing too).
  const refused = chatRefusal(q.openAIAccountFields ? 'openai' : 'openai-compatible', opts.config.id, req);
  if (refused) throw invalidParam(refused.param, refused.message);
  // The host's own refusals (the ingress refuses them before queueing too, from the pool's record).
  const unsupported = unsupportedRefusal(q.unsupported ?? [], opts.config.id, req);
  if (unsupported) throw invalidParam(unsupported.param, unsupported.message);
  const body: Record<string, unknown> = { model: opts.model, messages: translateMessages(req.messages, q) };
  const max = requestedMaxTokens(req);
  if (max !== undefined) body[q.maxTokensField ?? 'max_tokens'] = max;
  const copy = [
    'temperature',
    'top_p',
    'stop',
    'seed',
    'presence_penalty',
    'frequency_penalty',
    'logit_bias',
    'n',
    'logprobs',
    'top_logprobs',
    'response_format',
    'reasoning_effort',
    'user',
  ] as const;
  for (const k of copy) {
    const v = req[k];
    // An empty stop list asks for nothing; the o-series refuse `stop` in any form.
    if (v !== undefined && v !== null && !(Array.isArray(v) && v.length === 0)) body[k] = v;
  }
  if (q.openAIAccountFields) {
    for (const k of [
      'store',
      'metadata',
      'safety_identifier',
      'service_tier',
      'prompt_cache_key',
      'prompt_cache_retention',
      'verbosity',
      'prediction',
    ] as const) {
      const v = req[k];
      if (v !== undefined && v !== null) body[k] = v;
    }
  } else if (req.safety_identifier !== undefined && body.user === undefined) {
    // OpenAI's newer name for the end-user tag: what these hosts call `user`.
    body.user = req.safety_identifier;
  }
  for (const k of q.drop ?? []) delete body[k];
  if (req.tools && req.tools.length > 0) {
    const choice = req.tool_choice;
    if (q.noToolChoice && choice !== undefined && choice !== 'auto') {
      if (choice !== 'none') {
        throw invalidParam('tool_choice', 'this provider cannot force a tool call (tool_choice)');
      }
      // 'none' with tools = no tools: same meaning, and the host would otherwise ignore it.
    } else {
      body.tools = req.tools.some((t) => t.cache_control)
        ? req.tools.map(({ cache_control: _anthropicOnly, ...t }) => t)
        : req.tools;
      if (choice !== undefined && !q.noToolChoice) body.tool_choice = choice;
      if (req.parallel_tool_calls !== undefined) body.parallel_tool_calls = req.parallel_tool_calls;
    }
  } else if (req.tool_choice !== undefined && req.tool_choice !== 'none' && req.tool_choice !== 'auto') {
    throw invalidParam('tool_choice', 'tool_choice requires tools');
  }
  if (opts.stream) {
    body.stream = true;
    // Usage is how we bill: always ask for the final usage chunk.
    if (!q.noStreamOptions) body.stream_options = { include_usage: true };
  }
  return body;
}

export function buildChatRequest(
  req: ChatRequest,
  opts: BuildOptions,
  q: OpenAICompatibleQuirks,
): UpstreamRequest {
  const headers = authHeaders(opts.apiKey, q, opts.config.headers);
  if (opts.stream) headers.accept = 'text/event-stream';
  return {
    method: 'POST',
    url: joinUrl(opts.config.baseUrl, '/chat/completions'),
    headers,
    body: JSON.stringify(buildChatBody(req, opts, q)),
  };
}
