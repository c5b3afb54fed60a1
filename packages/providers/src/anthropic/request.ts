import { BUILTIN_MODELS } from '@faregate/catalog/models';
import {
  type ChatMessage,
  type ChatRequest,
  type ContentPart,
  requestedMaxTokens,
} from '@faregate/contracts/chat';
import { isHttpUrl, parseArguments, parseDataUrl, stopList, textOf } from '../shared/content.ts';
import { chatRefusal } from '@faregate/catalog/capabilities';
import { invalidParam } from '../shared/errors.ts';
import type { BuildOptions, UpstreamRequest } from '../types.ts';

export const ANTHROPIC_VERSION = '2023-06-01';

/**
 * Anthropic requires max_tokens. When the caller gives none we send min(catalog max output, 4096):
 * enough for a normal answer, and it keeps the budget hold (priced on max output) modest.
 */
export const DEFAULT_MAX_TOKENS = 4096;

/**
 * Thinking budgets for OpenAI's reasoning_effort (`none` and `minimal`: no extended thinking). Without
 * a token limit from the caller, max_tokens is the budget plus DEFAULT_MAX_TOKENS for the answer,
 * within the model's output limit (64k for Claude 4.5), which `max` nearly fills.
 */
const THINKING_BUDGET = { low: 1024, medium: 4096, high: 16384, xhigh: 32768, max: 57344 } as const;

/** The output limit assumed of a Claude model the catalog does not know (Opus 4.1's, the least). */
const UNKNOWN_MAX_OUTPUT = 32_000;

/** The model's output limit, as the catalog lists it (a dated id by its alias), if it knows it. */
function maxOutputOf(model: string): number | undefined {
  return BUILTIN_MODELS.find(
    (m) => m.provider === 'anthropic' && (m.id === model || model.startsWith(`${m.id}-`)),
  )?.maxOutputTokens;
}

export function defaultMaxTokens(model: string): number {
  return Math.min(maxOutputOf(model) ?? DEFAULT_MAX_TOKENS, DEFAULT_MAX_TOKENS);
}

/** Extended thinking is asked for (`none` and `minimal`: no extended thinking). */
const thinks = (effort: ChatRequest['reasoning_effort']): effort is keyof typeof THINKING_BUDGET =>
  effort !== undefined && effort !== null && effort !== 'none' && effort !== 'minimal';

/**
 * The `max_tokens` a request is sent to `model` with (Anthropic requires one): the caller's limit,
 * or, without one, room for the answer (DEFAULT_MAX_TOKENS), plus the thinking budget when thinking
 * is asked for, within the model's output limit (32,000 for a model the catalog does not know). The
 * one place that decides it: the ingress holds a call's cost on it. `thinking` false: the request
 * goes without extended thinking after all (see `buildAnthropicBody`).
 */
export function anthropicMaxTokens(req: ChatRequest, model: string, thinking = true): number {
  const requested = requestedMaxTokens(req);
  if (requested !== undefined) return requested;
  const effort = req.reasoning_effort;
  if (!thinking || !thinks(effort)) return defaultMaxTokens(model);
  return Math.min(THINKING_BUDGET[effort] + DEFAULT_MAX_TOKENS, maxOutputOf(model) ?? UNKNOWN_MAX_OUTPUT);
}

type Block = Record<string, unknown>;
interface Turn {
  role: 'user' | 'assistant';
  content: Block[];
}

/** A part's caching breakpoint, carried onto the block built from it (Anthropic's prompt caching). */
function partToBlock(p: ContentPart, param: string): Block {
  const block = blockOf(p, param);
  if ('cache_control' in p && p.cache_control) block.cache_control = p.cache_control;
  return block;
}

function blockOf(p: ContentPart, param: string): Block {
  switch (p.type) {
    case 'text':
      return { type: 'text', text: p.text };
    case 'refusal':
      return { type: 'text', text: p.refusal };
    case 'image_url': {
      const url = p.image_url.url;
      const d = parseDataUrl(url);
      if (d) return { type: 'image', source: { type: 'base64', media_type: d.mediaType, data: d.data } };
      if (isHttpUrl(url)) return { type: 'image', source: { type: 'url', url } };
      throw invalidParam(param, 'image_url must be an http(s) URL or a base64 data: URL');
    }
    case 'file': {
      const d = p.file.file_data ? parseDataUrl(p.file.file_data) : undefined;
      if (d?.mediaType === 'application/pdf') {
        // The file's name is the document's title (OpenAI shows the model the name; Anthropic the title).
        const title = p.file.filename ? { title: p.file.filename } : {};
        return {
          type: 'document',
          source: { type: 'base64', media_type: d.mediaType, data: d.data },
          ...title,
        };
      }
      throw invalidParam(
        param,
        'only inline PDF file parts (file_data as a data: URL) are supported for Anthropic',
      );
    }
    case 'input_audio':
      throw invalidParam(param, 'audio input is not supported by Anthropic models');
  }
}

function blocksOf(content: Extract<ChatMessage, { role: 'user' }>['content'], param: string): Block[] {
  if (typeof content === 'string') return content === '' ? [] : [{ type: 'text', text: content }];
  return content.map((p) => partToBlock(p, param));
}

/**
 * OpenAI messages → Anthropic `system` + alternating turns. System/developer messages become the
 * top-level `system` (Anthropic has no mid-conversation system turn; their order is kept). Tool
 * results become `tool_result` blocks in a user turn; consecutive same-role turns are merged.
 */
export function translateMessages(messages: ChatMessage[]): { system: Block[]; turns: Turn[] } {
  const system: Block[] = [];
  const turns: Turn[] = [];
  const push = (role: Turn['role'], content: Block[]) => {
    if (content.length === 0) return;
    const last = turns[turns.length - 1];
    if (last && last.role === role) last.content.push(...content);
    else turns.push({ role, content });
  };
  messages.forEach((m, i) => {
    const param = `messages[${i}].content`;
    switch (m.role) {
      case 'system':
      case 'developer': {
        // Parts with a caching breakpoint stay blocks of their own, so the breakpoint stays where it was.
        if (Array.isArray(m.content) && m.content.some((p) => 'cache_control' in p && p.cache_control)) {
          for (const p of m.content) {
            const text = textOf([p], param);
            if (text !== '') system.push({ type: 'text', text, ...cacheOf(p) });
          }
          break;
        }
        const text = textOf(m.content, param);
        if (text !== '') system.push({ type: 'text', text });
        break;
      }
      case 'user':
        push('user', blocksOf(m.content, param));
        break;
      case 'assistant': {
        // Earlier thinking first, unchanged (signature and all): Anthropic needs it to go on with a
        // tool-use turn while thinking is on, and checks the signature.
        const blocks: Block[] = (m.thinking_blocks ?? []).map((b) =>
          b.type === 'thinking'
            ? { type: 'thinking', thinking: b.thinking, signature: b.signature }
            : { type: 'redacted_thinking', data: b.data },
        );
        if (m.content != null) blocks.push(...blocksOf(m.content, param));
        for (const [j, tc] of (m.tool_calls ?? []).entries()) {
          blocks.push({
            type: 'tool_use',
            id: tc.id,
            name: tc.function.name,
            input: parseArguments(tc.function.arguments, `messages.${i}.tool_calls.${j}.function.arguments`),
          });
        }
        push('assistant', blocks);
        break;
      }
      case 'tool': {
        if (typeof m.content === 'string') {
          push('user', [{ type: 'tool_result', tool_use_id: m.tool_call_id, content: m.content }]);
          break;
        }
        // A breakpoint on the result's last part is the tool_result block's own (where /v1/messages had it).
        const content = blocksOf(m.content, param);
        const last = content.at(-1);
        const cache = last?.cache_control;
        if (last && cache) delete last.cache_control;
        push('user', [
          {
            type: 'tool_result',
            tool_use_id: m.tool_call_id,
            content,
            ...(cache ? { cache_control: cache } : {}),
          },
        ]);
        break;
      }
    }
  });
  return { system, turns };
}

const cacheOf = (p: ContentPart): { cache_control?: unknown } =>
  'cache_control' in p && p.cache_control ? { cache_control: p.cache_control } : {};

function toolChoiceOf(req: ChatRequest): Block | undefined {
  const c = req.tool_choice;
  const noParallel = req.parallel_tool_calls === false ? { disable_parallel_tool_use: true } : {};
  if (c === undefined) return req.parallel_tool_calls === false ? { type: 'auto', ...noParallel } : undefined;
  if (c === 'auto') return { type: 'auto', ...noParallel };
  if (c === 'none') return { type: 'none' };
  if (c === 'required') return { type: 'any', ...noParallel };
  return { type: 'tool', name: c.function.name, ...noParallel };
}

/**
 * The conversation goes on from an assistant tool-use turn that does not start with its thinking.
 * With thinking on, Anthropic refuses such a turn; an OpenAI-format client (most agent loops: the AI
 * SDK's, LangChain's) has no way to send Anthropic's signed thinking back (only `thinking_blocks`,
 * this gateway's own field). That call then goes without thinking, as Anthropic allows (LiteLLM
 * does the same); the loop's first call, and any call after a user turn, think as asked.
 */
function continuesUnsignedToolUse(turns: Turn[]): boolean {
  const last = turns.findLast((t) => t.role === 'assistant');
  if (!last?.content.some((b) => b.type === 'tool_use')) return false;
  const first = last.content[0]?.type;
  return first !== 'thinking' && first !== 'redacted_thinking';
}

export function buildAnthropicBody(req: ChatRequest, opts: BuildOptions): Record<string, unknown> {
  // What Anthropic cannot do (capabilities.ts; the ingress refuses it before queueing too).
  const refused = chatRefusal('anthropic', opts.config.id, req);
  if (refused) throw invalidParam(refused.param, refused.message);
  const { system, turns } = translateMessages(req.messages);
  const effort = req.reasoning_effort;
  // The chat door's callers cannot send Anthropic's signed thinking back (the Messages door's can).
  const unsigned = req.thinking_budget === undefined && continuesUnsignedToolUse(turns);
  const thinking = thinks(effort) && !unsigned;
  const maxTokens = anthropicMaxTokens(req, opts.model, thinking);
  const body: Record<string, unknown> = { model: opts.model, max_tokens: maxTokens, messages: turns };
  if (system.length > 0) body.system = system;
  if (req.temperature != null) body.temperature = req.temperature;
  if (req.top_p != null) body.top_p = req.top_p;
  if (req.top_k != null) body.top_k = req.top_k;
  const stop = stopList(req.stop);
  if (stop) body.stop_sequences = stop;
  if (thinking && thinks(effort)) {
    // OpenAI's max_completion_tokens includes reasoning; Anthropic's budget must stay below max_tokens.
    // Without the caller's limit: the budget and room for the answer (anthropicMaxTokens).
    const unlimited = requestedMaxTokens(req) === undefined;
    const budget = Math.min(
      req.thinking_budget ?? THINKING_BUDGET[effort],
      unlimited ? maxTokens - DEFAULT_MAX_TOKENS : maxTokens - 1,
    );
    if (budget < 1024)
      throw invalidParam('reasoning_effort', 'reasoning needs max_completion_tokens above 1024 on Anthropic');
    if (req.temperature != null && req.temperature !== 1) {
      throw invalidParam('temperature', 'Anthropic requires temperature 1 when reasoning is enabled');
    }
    body.thinking = { type: 'enabled', budget_tokens: budget };
  }
  // Tools go with `none` too (Anthropic takes `{type:'none'}` natively): a conversation holding
  // tool_use / tool_result blocks without `tools` is a 400 there, and the tools' caching breakpoints
  // would be lost.
  if (req.tools && req.tools.length > 0) {
    // `strict: true` is Anthropic's strict tool use (the input follows the schema exactly), as OpenAI's.
    body.tools = req.tools.map((t) => ({
      name: t.function.name,
      ...(t.function.description ? { description: t.function.description } : {}),
      input_schema: t.function.parameters ?? { type: 'object', properties: {} },
      ...(t.function.strict === true ? { strict: true } : {}),
      ...(t.cache_control ? { cache_control: t.cache_control } : {}),
    }));
    const choice = toolChoiceOf(req);
    if (choice) body.tool_choice = choice;
  }
  const rf = req.response_format;
  if (rf?.type === 'json_schema') {
    body.output_config = {
      format: { type: 'json_schema', schema: rf.json_schema.schema ?? { type: 'object' } },
    };
  } else if (rf?.type === 'json_object') {
    // Anthropic has no schema-less JSON mode; faking one (prefill) would change the output's shape.
    throw invalidParam(
      'response_format',
      "Anthropic supports response_format 'json_schema', not 'json_object'",
    );
  }
  const user = req.safety_identifier ?? req.user;
  if (user) body.metadata = { user_id: user };
  // seed, metadata, store: true, other service tiers: refused above (capabilities.ts).
  if (opts.stream) body.stream = true;
  return body;
}

export function anthropicHeaders(
  apiKey: string | undefined,
  extra?: Record<string, string>,
): Record<string, string> {
  return {
    'content-type': 'application/json',
    accept: 'application/json',
    ...(extra ?? {}),
    'anthropic-version': ANTHROPIC_VERSION,
    ...(apiKey ? { 'x-api-key': apiKey } : {}),
  };
}

export const anthropicUrl = (baseUrl: string, path: string) => baseUrl.replace(/\/+$/, '') + path;

export function buildAnthropicRequest(req: ChatRequest, opts: BuildOptions): UpstreamRequest {
  const headers = anthropicHeaders(opts.apiKey, opts.config.headers);
  if (opts.stream) headers.accept = 'text/event-stream';
  return {
    method: 'POST',
    url: anthropicUrl(opts.config.baseUrl, '/v1/messages'),
    headers,
    body: JSON.stringify(buildAnthropicBody(req, opts)),
  };
}
