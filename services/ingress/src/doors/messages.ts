import type {
  AnthropicBlock,
  AnthropicContent,
  AnthropicCountTokensRequest,
  AnthropicErrorBody,
  AnthropicErrorType,
  AnthropicRequest,
  AnthropicResponse,
  AnthropicStopReason,
  AnthropicUsage,
} from '@faregate/contracts/anthropic';
import type {
  ChatCompletion,
  ChatMessage,
  ChatRequest,
  ContentPart,
  FinishReason,
  OpenAIUsage,
  ThinkingBlock,
  ToolCall,
} from '@faregate/contracts/chat';
import type { ErrorCode } from '@faregate/contracts/errors';
import type { Frame } from '@faregate/contracts/frames';
import type { RouteStep } from '@faregate/contracts/route';
import {
  checkBase64,
  checkBreakpoints,
  checkToolPairs,
  checkTools,
  type Placed,
  refuse,
  type Turn,
  turnsOf,
} from './messages-rules.ts';
import {
  type Door,
  type DoorNames,
  type FrameWriter,
  invalidParam,
  parseToolInput,
  runningCall,
} from './shared.ts';

/**
 * The Anthropic Messages door: pure translations between Anthropic's wire format and the gateway's
 * one internal request (the OpenAI chat shape), so `/v1/messages` runs on the same pipeline as
 * `/v1/chat/completions` whatever provider serves it.
 */

const invalid = invalidParam;

/** Thinking budgets map onto the pipeline's reasoning effort (the Anthropic adapter maps them back). */
export function effortOfBudget(budget: number): 'low' | 'medium' | 'high' {
  if (budget <= 1024) return 'low';
  if (budget <= 4096) return 'medium';
  return 'high';
}

type UserPart = Extract<ContentPart, { type: 'text' | 'image_url' | 'file' }>;
type DocumentBlock = Extract<AnthropicBlock, { type: 'document' }>;

/** A block as chat parts, with its caching breakpoint on the last (the Anthropic adapter puts it back). */
function partsOf(b: AnthropicBlock, param: string): UserPart[] {
  const parts = b.type === 'document' ? documentParts(b, param) : [plainPartOf(b, param)];
  const last = parts.at(-1);
  if (last && 'cache_control' in b && b.cache_control)
    parts[parts.length - 1] = { ...last, cache_control: b.cache_control };
  return parts;
}

function plainPartOf(b: Exclude<AnthropicBlock, { type: 'document' }>, param: string): UserPart {
  switch (b.type) {
    case 'text':
      return { type: 'text', text: b.text };
    case 'image':
      if (b.source.type === 'url') return { type: 'image_url', image_url: { url: b.source.url } };
      checkBase64(b.source.data, `${param}.source.data`);
      return { type: 'image_url', image_url: { url: `data:${b.source.media_type};base64,${b.source.data}` } };
    default:
      throw invalid(param, `A '${b.type}' block is not allowed here.`);
  }
}

/**
 * A document as chat parts, on every target: a PDF as a file part (its title as the file's name,
 * which OpenAI shows the model and the Anthropic adapter gives back as the document's `title`), plain
 * text and content documents as their text and images. `context` (and the title of a document that
 * travels as text) comes first as a text part: every target's model reads it, as Anthropic's does.
 * Refused by name: citations (no answer through the gateway carries them), a PDF by URL (files travel
 * inline in the one request; OpenAI and Gemini take no PDF URL), a Files API id (Anthropic's store).
 */
function documentParts(b: DocumentBlock, param: string): UserPart[] {
  if (b.citations?.enabled === true)
    throw refuse(
      `${param}.citations`,
      'Citations are not supported through this gateway: its answers carry no citations. Leave `citations` out, or set `enabled: false`.',
    );
  const src = b.source;
  if (src.type === 'url')
    throw refuse(
      `${param}.source`,
      "A document by URL is not supported through this gateway: send the PDF inline (source type 'base64').",
    );
  if (src.type === 'file')
    throw refuse(
      `${param}.source`,
      "A document by Files API id is not supported through this gateway: send it inline (source type 'base64' or 'text').",
    );
  const title = b.title ?? undefined;
  const header = [
    ...(title !== undefined && src.type !== 'base64' ? [`Document title: ${title}`] : []),
    ...(b.context != null ? [`Document context: ${b.context}`] : []),
  ];
  const parts: UserPart[] = header.length > 0 ? [{ type: 'text', text: header.join('\n') }] : [];
  if (src.type === 'base64') {
    checkBase64(src.data, `${param}.source.data`);
    parts.push({
      type: 'file',
      file: { file_data: `data:application/pdf;base64,${src.data}`, ...(title ? { filename: title } : {}) },
    });
  } else if (src.type === 'text') parts.push({ type: 'text', text: src.data });
  else if (typeof src.content === 'string') parts.push({ type: 'text', text: src.content });
  else
    src.content.forEach((c, k) => {
      parts.push(...partsOf(c, `${param}.source.content.${k}`));
    });
  return parts;
}

/**
 * What an answer's tool_use block carries besides the call, sent back: a direct caller (the model,
 * the default) and no toolset are left out; a server tool's caller or a toolset member cannot be
 * tied to anything here (the gateway runs neither), so they are refused by name.
 */
function checkToolUse(b: Extract<AnthropicBlock, { type: 'tool_use' }>, param: string): void {
  if (b.caller && b.caller.type !== 'direct')
    throw refuse(
      `${param}.caller`,
      `A tool call made by '${b.caller.type}' is not supported through this gateway: it runs no server tools (only 'direct' calls, by the model).`,
    );
  if (b.toolset_name != null)
    throw refuse(
      `${param}.toolset_name`,
      'Toolsets are not supported through this gateway: a tool call of a toolset cannot be sent back.',
    );
}

/**
 * Where the one request's content parts came from (`messages.3.content.1` → the caller's
 * `messages.2.content.0.content.1`), so a refusal of the pipeline names the caller's path.
 */
export type { DoorNames };

/** The chat message about to be pushed: its parts' origins, recorded in `names`. */
function placeParts(out: ChatMessage[], origins: readonly string[], names: DoorNames | undefined): void {
  if (!names) return;
  for (const [p, o] of origins.entries()) names[`messages.${out.length}.content.${p}`] = o;
}

/** A block as chat parts, each part's origin (the block's path) added to `origins`. */
function partsAt(b: AnthropicBlock, path: string, origins: string[]): UserPart[] {
  const parts = partsOf(b, path);
  for (const _ of parts) origins.push(path);
  return parts;
}

/** An Anthropic turn → chat messages (a user turn's tool results become tool messages, first). */
function turnOf(t: Turn, out: ChatMessage[], names: DoorNames | undefined): void {
  if (typeof t.content === 'string') {
    out.push({ role: t.role, content: t.content });
    return;
  }
  if (t.role === 'assistant') {
    out.push(assistantOf(t.content));
    return;
  }
  const parts: UserPart[] = [];
  const origins: string[] = [];
  for (const { block: b, path } of t.content) {
    if (b.type !== 'tool_result') {
      parts.push(...partsAt(b, path, origins));
      continue;
    }
    const c = b.content ?? '';
    const within: string[] = [];
    const content: string | UserPart[] =
      typeof c === 'string' ? c : c.flatMap((p, k) => partsAt(p, `${path}.content.${k}`, within));
    // The block's breakpoint rides on its last part (the Anthropic adapter lifts it back).
    const cache = b.cache_control ?? undefined;
    const sent =
      cache && (typeof content === 'string' || content.length > 0)
        ? typeof content === 'string'
          ? [{ type: 'text' as const, text: content, cache_control: cache }]
          : content.map((p, k) => (k === content.length - 1 ? { ...p, cache_control: cache } : p))
        : content;
    placeParts(out, within, names);
    out.push({ role: 'tool', tool_call_id: b.tool_use_id, content: sent });
  }
  if (parts.length === 0) return;
  placeParts(out, origins, names);
  out.push({ role: 'user', content: parts });
}

/** An assistant turn's blocks → one chat assistant message (text, tool calls, earlier thinking). */
function assistantOf(blocks: readonly Placed[]): ChatMessage {
  let text = '';
  const calls: ToolCall[] = [];
  const thinking: ThinkingBlock[] = [];
  for (const { block: b, path } of blocks) {
    if (b.type === 'text') text += b.text;
    else if (b.type === 'tool_use') {
      checkToolUse(b, path);
      calls.push({
        id: b.id,
        type: 'function',
        function: { name: b.name, arguments: JSON.stringify(b.input) },
      });
    }
    // Earlier thinking travels in order, unchanged, for Anthropic (which needs it, signed, to go on
    // with a tool-use turn). A thinking block without a signature is not Anthropic's (it is how
    // this door shows another provider's reasoning) and no target can take it back: left out.
    else if (b.type === 'thinking') {
      if (b.signature) thinking.push({ type: 'thinking', thinking: b.thinking, signature: b.signature });
    } else if (b.type === 'redacted_thinking') {
      if (b.data === '') throw invalid(`${path}.data`, 'A redacted_thinking block needs its data.');
      thinking.push({ type: 'redacted_thinking', data: b.data });
    } else throw invalid(path, `An assistant turn cannot hold a '${b.type}' block.`);
  }
  return {
    role: 'assistant',
    content: text === '' && calls.length > 0 ? null : text,
    ...(calls.length > 0 ? { tool_calls: calls } : {}),
    ...(thinking.length > 0 ? { thinking_blocks: thinking } : {}),
  };
}

function messagesOf(req: AnthropicCountTokensRequest, names: DoorNames | undefined): ChatMessage[] {
  const out: ChatMessage[] = [];
  if (typeof req.system === 'string') {
    if (req.system !== '') out.push({ role: 'system', content: req.system });
  } else if (req.system?.length) {
    out.push({
      role: 'system',
      content: req.system.map((b) => ({
        type: 'text',
        text: b.text,
        ...(b.cache_control ? { cache_control: b.cache_control } : {}),
      })),
    });
  }
  const turns = turnsOf(req.messages);
  for (const t of turns) turnOf(t, out, names);
  checkToolPairs(turns);
  if (!out.some((m) => m.role !== 'system'))
    throw invalid('messages', 'The messages have no content: every turn is empty.');
  if (out.length > 4096)
    throw invalid('messages', 'The conversation has more than 4096 turns and tool results.');
  return out;
}

/**
 * A tool's description, with its `input_examples` after it. Anthropic takes the examples only under
 * a beta header the gateway does not send (the adapter sends the routing file's headers, not the
 * caller's), and the one request's tool has no field for them; dropped, the model would lose the
 * guidance the caller wrote. In the description every target's model reads them.
 */
function descriptionOf(t: NonNullable<AnthropicCountTokensRequest['tools']>[number]): string | undefined {
  if (!t.input_examples?.length) return t.description;
  const examples = t.input_examples.map((e) => JSON.stringify(e)).join('\n');
  return `${t.description ?? ''}${t.description ? '\n\n' : ''}Examples of valid input:\n${examples}`;
}

/**
 * The prompt part of a request (also what count_tokens measures). `names`, when given, gets the
 * caller's path of each content part of the one request (see `DoorNames`).
 */
export function promptOf(req: AnthropicCountTokensRequest, names?: DoorNames): ChatRequest {
  checkTools(req);
  checkBreakpoints(req);
  const chat: ChatRequest = { model: req.model, messages: messagesOf(req, names) };
  if (req.tools?.length) {
    chat.tools = req.tools.map((t) => {
      const description = descriptionOf(t);
      return {
        type: 'function',
        ...(t.cache_control ? { cache_control: t.cache_control } : {}),
        function: {
          name: t.name,
          ...(description !== undefined ? { description } : {}),
          parameters: t.input_schema,
          ...(t.strict !== undefined ? { strict: t.strict } : {}),
        },
      };
    });
  }
  const c = req.tool_choice;
  if (c) {
    chat.tool_choice =
      c.type === 'auto'
        ? 'auto'
        : c.type === 'any'
          ? 'required'
          : c.type === 'none'
            ? 'none'
            : { type: 'function', function: { name: c.name } };
    if (c.type !== 'none' && c.disable_parallel_tool_use === true) chat.parallel_tool_calls = false;
  }
  if (req.thinking?.type === 'enabled') {
    if (req.thinking.display === 'omitted')
      throw refuse(
        'thinking.display',
        "'omitted' is not supported through this gateway: the answer shows the thinking as returned ('summarized', the default).",
      );
    // The budget asked for goes to Anthropic and Gemini as it is (the chat request's effort, its
    // nearest level, is for OpenAI's reasoning models).
    chat.reasoning_effort = effortOfBudget(req.thinking.budget_tokens);
    chat.thinking_budget = req.thinking.budget_tokens;
  }
  const format = req.output_config?.format;
  if (format)
    chat.response_format = { type: 'json_schema', json_schema: { name: 'output', schema: format.schema } };
  return chat;
}

/**
 * `POST /v1/messages` body → the internal chat request. A parameter a target cannot take (`top_k`
 * on OpenAI's protocol) is refused by the pipeline, naming it and the provider (by the caller's
 * names: `MESSAGES_PARAMS`, and the content paths recorded in `names`).
 */
export function toChatRequest(req: AnthropicRequest, names?: DoorNames): ChatRequest {
  if (req.thinking?.type === 'enabled' && req.thinking.budget_tokens >= req.max_tokens)
    throw invalid('thinking.budget_tokens', '`max_tokens` must be greater than `thinking.budget_tokens`.');
  const chat = promptOf(req, names);
  chat.max_tokens = req.max_tokens;
  if (req.stream === true) chat.stream = true;
  if (req.stop_sequences?.length) chat.stop = req.stop_sequences;
  if (req.temperature !== undefined) chat.temperature = req.temperature;
  if (req.top_p !== undefined) chat.top_p = req.top_p;
  if (req.top_k !== undefined) chat.top_k = req.top_k;
  if (req.metadata?.user_id) chat.user = req.metadata.user_id;
  // Anthropic's default effort is `high`: the same as none. Another level has no honest equivalent
  // on every target: the one request's reasoning effort turns extended thinking on at Anthropic
  // (effort does not), and tunes only reasoning elsewhere.
  const effort = req.output_config?.effort;
  if (effort != null && effort !== 'high')
    throw refuse(
      'output_config.effort',
      `the effort '${effort}' is not supported through this gateway ('high', Anthropic's default, is): to spend more or less on reasoning, use \`thinking\` with a budget.`,
    );
  // A beta of Anthropic's, under its `anthropic-beta` header, which the gateway does not pass on.
  if (req.context_management != null)
    throw refuse(
      'context_management',
      "not supported through this gateway: it is a beta of Anthropic's API that the gateway does not pass on (clear old tool results from the conversation yourself).",
    );
  return chat;
}

/** The chat parameters this door fills, by the names its callers use (for the pipeline's refusals). */
export const MESSAGES_PARAMS: Readonly<Record<string, string>> = {
  user: 'metadata.user_id',
  stop: 'stop_sequences',
  reasoning_effort: 'thinking',
  parallel_tool_calls: 'tool_choice.disable_parallel_tool_use',
  response_format: 'output_config.format',
};

const STOP: Record<FinishReason, AnthropicStopReason> = {
  stop: 'end_turn',
  length: 'max_tokens',
  tool_calls: 'tool_use',
  function_call: 'tool_use',
  content_filter: 'refusal',
};

/** Anthropic counts input without cache reads and writes (providers.md §0.1). */
export function anthropicUsage(u: OpenAIUsage): AnthropicUsage {
  const cacheRead = u.prompt_tokens_details.cached_tokens;
  const cacheWrite = u.prompt_tokens_details.cache_write_tokens ?? 0;
  const hour = Math.min(u.prompt_tokens_details.cache_write_1h_tokens ?? 0, cacheWrite);
  return {
    input_tokens: Math.max(0, u.prompt_tokens - cacheRead - cacheWrite),
    output_tokens: u.completion_tokens,
    cache_read_input_tokens: cacheRead,
    cache_creation_input_tokens: cacheWrite,
    cache_creation: { ephemeral_5m_input_tokens: cacheWrite - hour, ephemeral_1h_input_tokens: hour },
  };
}

type Choice = ChatCompletion['choices'][number];

/**
 * The stop reason and matched sequence of a choice: `stop_sequence` when the provider named the
 * sequence that ended it (Anthropic, vLLM); a provider that does not say (OpenAI, Gemini) ends with
 * `end_turn` and `stop_sequence: null`, since the gateway cannot tell which one matched, or whether
 * one did.
 */
function stopOf(choice: Choice | undefined): {
  stop_reason: AnthropicStopReason;
  stop_sequence: string | null;
} {
  const finish = choice?.finish_reason ?? 'stop';
  const seq = choice?.stop_reason;
  if (finish === 'stop' && typeof seq === 'string')
    return { stop_reason: 'stop_sequence', stop_sequence: seq };
  return { stop_reason: STOP[finish], stop_sequence: null };
}

/** A content block of this door's answers: Anthropic's, `redacted_thinking` included. */
type MessageContent = AnthropicContent | { type: 'redacted_thinking'; data: string };

/** The non-streamed answer of `POST /v1/messages`. */
export type MessageResponse = Omit<AnthropicResponse, 'content'> & { content: MessageContent[] };

/**
 * The thinking blocks of a choice, as Anthropic gave them: each `thinking` with its own signature,
 * `redacted_thinking` with its data, in order. Another provider's reasoning (text only) is one
 * `thinking` block with an empty signature; so is thinking Anthropic cut before signing it.
 */
function thinkingOf(choice: Choice | undefined): MessageContent[] {
  const m = choice?.message;
  const text = typeof m?.reasoning_content === 'string' ? m.reasoning_content : '';
  const blocks: MessageContent[] = [...(m?.thinking_blocks ?? [])];
  let signed = '';
  for (const b of blocks) if (b.type === 'thinking') signed += b.thinking;
  if (text.length > signed.length && text.startsWith(signed))
    blocks.push({ type: 'thinking', thinking: text.slice(signed.length), signature: '' });
  return blocks;
}

/** The pipeline's answer → Anthropic's message. `model` keeps the gateway's `provider/model`. */
export function toAnthropicMessage(r: ChatCompletion): MessageResponse {
  const choice = r.choices[0];
  const content: MessageContent[] = thinkingOf(choice);
  const text = choice?.message.content ?? '';
  if (text !== '') content.push({ type: 'text', text });
  for (const t of choice?.message.tool_calls ?? [])
    content.push({
      type: 'tool_use',
      id: t.id,
      name: t.function.name,
      input: parseToolInput(t.function.arguments),
    });
  return {
    id: r.id,
    type: 'message',
    role: 'assistant',
    model: r.model,
    content,
    ...stopOf(choice),
    usage: anthropicUsage(r.usage),
  };
}

const ERROR: Record<ErrorCode, [number, AnthropicErrorType]> = {
  invalid_request_error: [400, 'invalid_request_error'],
  invalid_api_key: [401, 'authentication_error'],
  permission_denied: [403, 'permission_error'],
  not_found: [404, 'not_found_error'],
  model_not_found: [404, 'not_found_error'],
  payload_too_large: [413, 'request_too_large'],
  insufficient_quota: [402, 'billing_error'],
  rate_limit_exceeded: [429, 'rate_limit_error'],
  context_length_exceeded: [400, 'invalid_request_error'],
  content_filter: [400, 'invalid_request_error'],
  upstream_auth_error: [500, 'api_error'],
  upstream_error: [500, 'api_error'],
  upstream_timeout: [504, 'timeout_error'],
  overloaded: [529, 'overloaded_error'],
  provider_unavailable: [503, 'overloaded_error'],
  cancelled: [499, 'invalid_request_error'],
  conflict: [409, 'invalid_request_error'],
  idempotency_key_in_use: [409, 'invalid_request_error'],
  idempotency_key_reused: [422, 'invalid_request_error'],
  internal_error: [500, 'api_error'],
};

/** A gateway error in Anthropic's shape and status (providers.md §2.5). */
export function anthropicError(
  code: ErrorCode,
  message: string,
  requestId?: string,
): { status: number; body: AnthropicErrorBody } {
  const [status, type] = ERROR[code];
  return {
    status,
    body: { type: 'error', error: { type, message }, ...(requestId ? { request_id: requestId } : {}) },
  };
}

/** The status and error type Anthropic uses for an HTTP status the gateway did not choose (e.g. 415). */
export function anthropicErrorForStatus(
  status: number,
  message: string,
): { status: number; body: AnthropicErrorBody } {
  const code: ErrorCode =
    status === 401
      ? 'invalid_api_key'
      : status === 403
        ? 'permission_denied'
        : status === 404
          ? 'not_found'
          : status === 413
            ? 'payload_too_large'
            : status === 429
              ? 'rate_limit_exceeded'
              : 'invalid_request_error';
  return { status, body: anthropicError(code, message).body };
}

const sse = (type: string, data: Record<string, unknown>) =>
  `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`;

/** An in-band error after the 200 status: the SDK throws it as an APIError of that type. */
export function anthropicErrorEvent(code: ErrorCode, message: string, requestId?: string): string {
  const { error, request_id } = anthropicError(code, message, requestId).body;
  return sse('error', { error, ...(request_id ? { request_id } : {}) });
}

type Open = { kind: 'text' | 'thinking' } | { kind: 'tool'; index: number };

/**
 * A job's frames → Anthropic's event sequence: `message_start`, then per block
 * `content_block_start` / `content_block_delta` (text_delta, thinking_delta, input_json_delta) /
 * `content_block_stop`, then `message_delta` (stop reason, final usage) and `message_stop`.
 * `message_start` carries the prompt's counts when the provider told them before its answer
 * (Anthropic: its own `message_start`'s, on the first delta frame), else 0 (OpenAI and Gemini count
 * at the end); `message_delta` carries the final counts either way.
 */
export class AnthropicStreamWriter implements FrameWriter {
  readonly #id: string;
  #model = '';
  #started = false;
  #open: Open | undefined;
  #blocks = 0;
  #sentText = '';
  /** Pipeline tool-call index → whether it was announced (id and name came). */
  readonly #tools = new Set<number>();
  route: RouteStep[] = [];

  constructor(id: string) {
    this.#id = id;
  }

  get started(): boolean {
    return this.#started;
  }

  #start(out: string[], prompt?: OpenAIUsage): void {
    if (this.#started) return;
    this.#started = true;
    out.push(
      sse('message_start', {
        message: {
          id: this.#id,
          type: 'message',
          role: 'assistant',
          model: this.#model,
          content: [],
          stop_reason: null,
          stop_sequence: null,
          // The prompt's counts when the provider told them before its answer (Anthropic does).
          usage: prompt
            ? anthropicUsage(prompt)
            : {
                input_tokens: 0,
                output_tokens: 0,
                cache_read_input_tokens: 0,
                cache_creation_input_tokens: 0,
                cache_creation: { ephemeral_5m_input_tokens: 0, ephemeral_1h_input_tokens: 0 },
              },
        },
      }),
    );
  }

  #close(out: string[]): void {
    if (!this.#open) return;
    out.push(sse('content_block_stop', { index: this.#blocks - 1 }));
    this.#open = undefined;
  }

  #openBlock(out: string[], open: Open, block: Record<string, unknown>): void {
    this.#close(out);
    this.#open = open;
    out.push(sse('content_block_start', { index: this.#blocks, content_block: block }));
    // Where Anthropic sends its first keep-alive (the SDK skips it).
    if (this.#blocks === 0) out.push(sse('ping', {}));
    this.#blocks++;
  }

  /** Makes sure a thinking block is open (a signature closes one: the next thinking opens another). */
  #thinking(out: string[]): void {
    this.#start(out);
    if (this.#open?.kind !== 'thinking')
      this.#openBlock(out, { kind: 'thinking' }, { type: 'thinking', thinking: '', signature: '' });
  }

  #text(out: string[], text: string): void {
    this.#start(out);
    if (this.#open?.kind !== 'text') this.#openBlock(out, { kind: 'text' }, { type: 'text', text: '' });
    this.#sentText += text;
    out.push(sse('content_block_delta', { index: this.#blocks - 1, delta: { type: 'text_delta', text } }));
  }

  #tool(out: string[], index: number, id: string, name: string, args: string): void {
    this.#start(out);
    if (!(this.#open?.kind === 'tool' && this.#open.index === index)) {
      this.#tools.add(index);
      this.#openBlock(out, { kind: 'tool', index }, { type: 'tool_use', id, name, input: {} });
    }
    if (args !== '')
      out.push(
        sse('content_block_delta', {
          index: this.#blocks - 1,
          delta: { type: 'input_json_delta', partial_json: args },
        }),
      );
  }

  frame(f: Frame): string {
    const out: string[] = [];
    const running = this.#started ? undefined : runningCall(f);
    if (running) {
      this.#model = running.model;
      this.route = running.route;
    } else if (f.type === 'delta') {
      // Only the first choice: this door has no `n`.
      if ((f.choice ?? 0) !== 0) return '';
      if (f.prompt) this.#start(out, f.prompt);
      // Anthropic's thinking block by block, as it came (a frame holds one block's at most): a
      // redacted block whole in its start event; a thinking block's deltas, then its signature,
      // which closes it.
      if (f.redacted_thinking) {
        this.#start(out);
        this.#openBlock(out, { kind: 'thinking' }, { type: 'redacted_thinking', data: f.redacted_thinking });
        this.#close(out);
      }
      if (f.reasoning) {
        this.#thinking(out);
        out.push(
          sse('content_block_delta', {
            index: this.#blocks - 1,
            delta: { type: 'thinking_delta', thinking: f.reasoning },
          }),
        );
      }
      if (f.signature) {
        this.#thinking(out);
        out.push(
          sse('content_block_delta', {
            index: this.#blocks - 1,
            delta: { type: 'signature_delta', signature: f.signature },
          }),
        );
        this.#close(out);
      }
      if (f.text) this.#text(out, f.text);
      if (f.refusal) this.#text(out, f.refusal);
      for (const t of f.tool_calls ?? []) {
        const known = this.#tools.has(t.index);
        // A call's first piece names it; later pieces only carry arguments.
        if (!known && !(t.id && t.function?.name)) continue;
        this.#tool(out, t.index, t.id ?? '', t.function?.name ?? '', t.function?.arguments ?? '');
      }
    } else if (f.type === 'done') {
      const r = f.result;
      if (!this.#started) this.#model = r.model;
      if (this.route.length === 0 && f.route) this.route = f.route;
      this.#start(out);
      const choice = r.choices[0];
      const content = choice?.message.content ?? '';
      // Anything the deltas did not carry (a provider that answered without streaming).
      if (content.length > this.#sentText.length && content.startsWith(this.#sentText))
        this.#text(out, content.slice(this.#sentText.length));
      (choice?.message.tool_calls ?? []).forEach((t, i) => {
        if (!this.#tools.has(i)) this.#tool(out, i, t.id, t.function.name, t.function.arguments);
      });
      this.#close(out);
      const usage = anthropicUsage(r.usage);
      out.push(
        sse('message_delta', {
          delta: stopOf(choice),
          usage,
        }),
        sse('message_stop', {}),
      );
    } else if (f.type === 'error') {
      out.push(anthropicErrorEvent(f.error.code, f.error.message, this.#id));
    }
    return out.join('');
  }

  error(code: ErrorCode, message: string): string {
    return anthropicErrorEvent(code, message, this.#id);
  }
}

/** The Messages door: whole answers as Anthropic messages, streams as Anthropic's events. */
export const messagesDoor = (): Door => ({
  answer: toAnthropicMessage,
  writer: (id) => new AnthropicStreamWriter(id),
});
