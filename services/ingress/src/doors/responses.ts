import type {
  ChatCompletion,
  ChatMessage,
  ChatRequest,
  ContentPart,
  OpenAIUsage,
} from '@faregate/contracts/chat';
import { errorBody, type ErrorCode } from '@faregate/contracts/errors';
import type { Frame } from '@faregate/contracts/frames';
import type {
  ResponsesFormat,
  ResponsesInputPart,
  ResponsesOutputItem,
  ResponsesOutputText,
  ResponsesReasoningItem,
  ResponsesRequest,
  ResponsesResponse,
  ResponsesUsage,
} from '@faregate/contracts/responses';
import type { RouteStep } from '@faregate/contracts/route';
import { openThinking, sealThinking } from './reasoning.ts';
import { type Door, type FrameWriter, invalidParam, runningCall } from './shared.ts';

/**
 * The OpenAI Responses door: pure translations between the Responses API and the gateway's one
 * internal request (the chat shape), stateless. `previous_response_id` and `store: true` need
 * responses kept by the gateway, which it does not do (yet): refused with a 400 naming them.
 */

const invalid = invalidParam;

type Part = Extract<ContentPart, { type: 'text' | 'image_url' }>;

function partOf(p: ResponsesInputPart, param: string): Part {
  switch (p.type) {
    case 'input_text':
    case 'output_text':
      return { type: 'text', text: p.text };
    case 'refusal':
      return { type: 'text', text: p.refusal };
    case 'input_image':
      if (!p.image_url)
        throw invalid(
          `${param}.image_url`,
          'Images are taken by image_url (an http(s) or data: URL); file_id needs stored files.',
        );
      return {
        type: 'image_url',
        image_url: { url: p.image_url, ...(p.detail ? { detail: p.detail } : {}) },
      };
  }
}

const textOf = (parts: ResponsesInputPart[]) =>
  parts.map((p) => (p.type === 'refusal' ? p.refusal : p.type === 'input_image' ? '' : p.text)).join('');

type AssistantMessage = Extract<ChatMessage, { role: 'assistant' }>;

/** An assistant turn begun by a reasoning item that nothing (text, calls) has joined yet. */
const thinkingOnly = (m: ChatMessage | undefined): m is AssistantMessage =>
  m?.role === 'assistant' && m.content == null && !m.tool_calls?.length && !!m.thinking_blocks?.length;

function messagesOf(req: ResponsesRequest): ChatMessage[] {
  const out: ChatMessage[] = [];
  if (req.instructions) out.push({ role: 'system', content: req.instructions });
  if (typeof req.input === 'string') {
    out.push({ role: 'user', content: req.input });
    return out;
  }
  req.input.forEach((item, i) => {
    const param = `input.${i}`;
    if (item.type === 'function_call') {
      const call = {
        id: item.call_id,
        type: 'function' as const,
        function: { name: item.name, arguments: item.arguments },
      };
      // Calls the model made together are one assistant turn (with the text before them).
      const last = out[out.length - 1];
      if (last?.role === 'assistant') last.tool_calls = [...(last.tool_calls ?? []), call];
      else out.push({ role: 'assistant', content: null, tool_calls: [call] });
    } else if (item.type === 'function_call_output') {
      const o = item.output;
      out.push({
        role: 'tool',
        tool_call_id: item.call_id,
        content: typeof o === 'string' ? o : o.map((p, k) => partOf(p, `${param}.output.${k}`)),
      });
    } else if (item.type === 'reasoning') {
      // The thinking behind the turn that follows (its text and calls join it). Only this
      // gateway's sealed Anthropic thinking can go back to a model; other reasoning (read-only
      // text, OpenAI's own encrypted content) is left out, as the Messages door leaves unsigned
      // thinking out.
      const sealed = item.encrypted_content;
      const blocks = sealed ? openThinking(sealed, `${param}.encrypted_content`) : undefined;
      if (!blocks) return;
      const last = out[out.length - 1];
      if (thinkingOnly(last)) last.thinking_blocks = [...(last.thinking_blocks ?? []), ...blocks];
      else out.push({ role: 'assistant', content: null, thinking_blocks: blocks });
    } else if (item.role === 'assistant') {
      const content = typeof item.content === 'string' ? item.content : textOf(item.content);
      const last = out[out.length - 1];
      if (thinkingOnly(last)) last.content = content;
      else out.push({ role: 'assistant', content });
    } else {
      const c = item.content;
      out.push({
        role: item.role,
        content: typeof c === 'string' ? c : c.map((p, k) => partOf(p, `${param}.content.${k}`)),
      });
    }
  });
  // Thinking that no text or call followed is no turn of its own.
  const turns = out.filter((m) => !thinkingOnly(m));
  if (turns.length === 0) throw invalid('input', 'The input has no message.');
  return turns;
}

function formatOf(f: ResponsesFormat | undefined): ChatRequest['response_format'] {
  if (!f || f.type === 'text') return undefined;
  if (f.type === 'json_object') return { type: 'json_object' };
  return {
    type: 'json_schema',
    json_schema: {
      name: f.name,
      schema: f.schema,
      ...(f.description !== undefined ? { description: f.description } : {}),
      ...(f.strict != null ? { strict: f.strict } : {}),
    },
  };
}

/**
 * What `include` may ask for. Reasoning items always carry their `encrypted_content` (the gateway
 * keeps no responses, so it is the only way thinking comes back), so asking for it changes nothing.
 */
const INCLUDES: ReadonlySet<string> = new Set(['reasoning.encrypted_content']);

/**
 * `POST /v1/responses` body → the internal chat request; stateful parameters are refused here.
 * `metadata` belongs to the response object (echoed in the answer), not to the model's request.
 */
export function toChatRequest(req: ResponsesRequest): ChatRequest {
  if (req.previous_response_id != null)
    throw invalid(
      'previous_response_id',
      'previous_response_id is not supported: this gateway does not keep responses. Send the whole conversation in `input`.',
    );
  if (req.store === true)
    throw invalid(
      'store',
      'store: true is not supported: this gateway does not keep responses. Send store: false or leave it out.',
    );
  for (const [i, v] of (req.include ?? []).entries())
    if (!INCLUDES.has(v))
      throw invalid(
        `include.${i}`,
        `include '${v}' is not supported by this gateway; it serves ${[...INCLUDES].map((x) => `'${x}'`).join(', ')}.`,
      );
  const chat: ChatRequest = { model: req.model, messages: messagesOf(req) };
  if (req.stream === true) chat.stream = true;
  if (req.tools?.length) {
    chat.tools = req.tools.map((t) => ({
      type: 'function',
      function: {
        name: t.name,
        ...(t.description != null ? { description: t.description } : {}),
        ...(t.parameters != null ? { parameters: t.parameters } : {}),
        ...(t.strict != null ? { strict: t.strict } : {}),
      },
    }));
  }
  const c = req.tool_choice;
  if (c !== undefined)
    chat.tool_choice = typeof c === 'string' ? c : { type: 'function', function: { name: c.name } };
  if (req.parallel_tool_calls != null) chat.parallel_tool_calls = req.parallel_tool_calls;
  const format = formatOf(req.text?.format);
  if (format) chat.response_format = format;
  const effort = req.reasoning?.effort;
  if (effort && effort !== 'none') chat.reasoning_effort = effort;
  if (req.max_output_tokens != null) chat.max_completion_tokens = req.max_output_tokens;
  if (req.temperature != null) chat.temperature = req.temperature;
  if (req.top_p != null) chat.top_p = req.top_p;
  if (req.user) chat.user = req.user;
  if (req.safety_identifier) chat.safety_identifier = req.safety_identifier;
  return chat;
}

/** The chat parameters this door fills, by the names its callers use (for the pipeline's refusals). */
export const RESPONSES_PARAMS: Readonly<Record<string, string>> = {
  max_completion_tokens: 'max_output_tokens',
  response_format: 'text.format',
  reasoning_effort: 'reasoning.effort',
};

export function responsesUsage(u: OpenAIUsage): ResponsesUsage {
  return {
    input_tokens: u.prompt_tokens,
    input_tokens_details: { cached_tokens: u.prompt_tokens_details.cached_tokens },
    output_tokens: u.completion_tokens,
    output_tokens_details: { reasoning_tokens: u.completion_tokens_details.reasoning_tokens },
    total_tokens: u.prompt_tokens + u.completion_tokens,
  };
}

/** Output item ids, the same in a stream's events and its final response. */
const messageId = (id: string) => `msg_${id}`;
const reasoningId = (id: string) => `rs_${id}`;
const callItemId = (id: string, index: number) => `fc_${id}_${index}`;

const outputText = (text: string): ResponsesOutputText => ({
  type: 'output_text',
  text,
  annotations: [],
  logprobs: [],
});

/**
 * Whether reasoning is shown as a summary: the caller asked for one (`reasoning.summary`). The text
 * is what the provider returned (Anthropic's and Gemini's thinking is already a summary of the
 * model's reasoning); shown either way, never both.
 */
const asSummary = (req: ResponsesRequest) => req.reasoning?.summary != null;

const reasoningItem = (
  id: string,
  text: string,
  status: ResponsesReasoningItem['status'],
  summary: boolean,
  signature = '',
): ResponsesReasoningItem => ({
  id,
  type: 'reasoning',
  status,
  summary: summary && text !== '' ? [{ type: 'summary_text', text }] : [],
  content: summary || text === '' ? [] : [{ type: 'reasoning_text', text }],
  encrypted_content:
    signature === '' ? null : sealThinking([{ type: 'thinking', thinking: text, signature }]),
});

/** The response object around `output` (what the request asked for, echoed as OpenAI does). */
function envelope(
  req: ResponsesRequest,
  id: string,
  createdAt: number,
  model: string,
): Omit<ResponsesResponse, 'status' | 'incomplete_details' | 'output' | 'usage'> {
  return {
    id,
    object: 'response',
    created_at: createdAt,
    error: null,
    model,
    instructions: req.instructions ?? null,
    max_output_tokens: req.max_output_tokens ?? null,
    metadata: req.metadata ?? {},
    parallel_tool_calls: req.parallel_tool_calls ?? true,
    previous_response_id: null,
    reasoning: { effort: req.reasoning?.effort ?? null, summary: req.reasoning?.summary ?? null },
    store: false,
    temperature: req.temperature ?? null,
    top_p: req.top_p ?? null,
    text: { format: req.text?.format ?? { type: 'text' } },
    tool_choice: req.tool_choice ?? 'auto',
    tools: req.tools ?? [],
    truncation: 'disabled',
    ...(req.user ? { user: req.user } : {}),
  };
}

function statusOf(r: ChatCompletion): Pick<ResponsesResponse, 'status' | 'incomplete_details'> {
  const finish = r.choices[0]?.finish_reason;
  if (finish === 'length')
    return { status: 'incomplete', incomplete_details: { reason: 'max_output_tokens' } };
  if (finish === 'content_filter')
    return { status: 'incomplete', incomplete_details: { reason: 'content_filter' } };
  return { status: 'completed', incomplete_details: null };
}

/** The pipeline's answer → the Responses output items (a message, then function calls). */
function outputOf(
  r: ChatCompletion,
  status: 'completed' | 'incomplete',
  summary: boolean,
): ResponsesOutputItem[] {
  const m = r.choices[0]?.message;
  const out: ResponsesOutputItem[] = [];
  // The model's reasoning comes first, as it did (when the provider returns its text).
  const reasoning = m?.reasoning_content;
  if (typeof reasoning === 'string' && reasoning !== '')
    out.push(
      reasoningItem(
        reasoningId(r.id),
        reasoning,
        'completed',
        summary,
        m?.thinking_blocks?.[0]?.signature ?? '',
      ),
    );
  const text = m?.content ?? m?.refusal ?? '';
  if (text !== '')
    out.push({
      id: messageId(r.id),
      type: 'message',
      status,
      role: 'assistant',
      content: [outputText(text)],
    });
  for (const [i, t] of (m?.tool_calls ?? []).entries()) {
    out.push({
      id: callItemId(r.id, i),
      type: 'function_call',
      status: 'completed',
      call_id: t.id,
      name: t.function.name,
      arguments: t.function.arguments,
    });
  }
  return out;
}

/** The non-streamed answer of `POST /v1/responses`. `model` keeps the gateway's `provider/model`. */
export function toResponse(req: ResponsesRequest, r: ChatCompletion): ResponsesResponse {
  const s = statusOf(r);
  return {
    ...envelope(req, r.id, r.created, r.model),
    ...s,
    output: outputOf(r, s.status === 'incomplete' ? 'incomplete' : 'completed', asSummary(req)),
    usage: responsesUsage(r.usage),
  };
}

type Open =
  | { kind: 'message'; index: number; id: string; text: string }
  | { kind: 'reasoning'; index: number; id: string; text: string; signature: string }
  | { kind: 'call'; index: number; id: string; callId: string; name: string; args: string; pipeline: number };

/**
 * A job's frames → the Responses stream: `response.created`, `response.in_progress`, then per output
 * item `response.output_item.added`, (`response.content_part.added`, `response.output_text.delta`…,
 * `response.output_text.done`, `response.content_part.done`) or (`response.function_call_arguments.delta`…,
 * `.done`), `response.output_item.done`, and `response.completed` (or `response.incomplete`) with the
 * whole response and its usage. Every event has its `sequence_number`, from 0.
 */
export class ResponsesStreamWriter implements FrameWriter {
  readonly #req: ResponsesRequest;
  readonly #id: string;
  readonly #created: number;
  #model = '';
  #seq = 0;
  #started = false;
  #open: Open | undefined;
  #items = 0;
  #sentText = '';
  readonly #calls = new Set<number>();
  route: RouteStep[] = [];

  constructor(req: ResponsesRequest, id: string, createdMs: number) {
    this.#req = req;
    this.#id = id;
    this.#created = Math.floor(createdMs / 1000);
  }

  get started(): boolean {
    return this.#started;
  }

  #event(type: string, data: Record<string, unknown>): string {
    return `event: ${type}\ndata: ${JSON.stringify({ type, ...data, sequence_number: this.#seq++ })}\n\n`;
  }

  #start(out: string[]): void {
    if (this.#started) return;
    this.#started = true;
    const response = {
      ...envelope(this.#req, this.#id, this.#created, this.#model),
      status: 'in_progress',
      incomplete_details: null,
      output: [],
      usage: null,
    };
    out.push(
      this.#event('response.created', { response }),
      this.#event('response.in_progress', { response }),
    );
  }

  #close(out: string[]): void {
    const o = this.#open;
    if (!o) return;
    this.#open = undefined;
    if (o.kind === 'reasoning') {
      const summary = asSummary(this.#req);
      if (summary) {
        const at = { item_id: o.id, output_index: o.index, summary_index: 0 };
        out.push(
          this.#event('response.reasoning_summary_text.done', { ...at, text: o.text }),
          this.#event('response.reasoning_summary_part.done', {
            ...at,
            part: { type: 'summary_text', text: o.text },
          }),
        );
      } else {
        const at = { item_id: o.id, output_index: o.index, content_index: 0 };
        out.push(
          this.#event('response.reasoning_text.done', { ...at, text: o.text }),
          this.#event('response.content_part.done', {
            ...at,
            part: { type: 'reasoning_text', text: o.text },
          }),
        );
      }
      out.push(
        this.#event('response.output_item.done', {
          output_index: o.index,
          item: reasoningItem(o.id, o.text, 'completed', summary, o.signature),
        }),
      );
    } else if (o.kind === 'message') {
      const at = { item_id: o.id, output_index: o.index, content_index: 0 };
      out.push(
        this.#event('response.output_text.done', { ...at, text: o.text, logprobs: [] }),
        this.#event('response.content_part.done', { ...at, part: outputText(o.text) }),
        this.#event('response.output_item.done', {
          output_index: o.index,
          item: {
            id: o.id,
            type: 'message',
            status: 'completed',
            role: 'assistant',
            content: [outputText(o.text)],
          },
        }),
      );
    } else {
      out.push(
        this.#event('response.function_call_arguments.done', {
          item_id: o.id,
          output_index: o.index,
          name: o.name,
          arguments: o.args,
        }),
        this.#event('response.output_item.done', {
          output_index: o.index,
          item: {
            id: o.id,
            type: 'function_call',
            status: 'completed',
            call_id: o.callId,
            name: o.name,
            arguments: o.args,
          },
        }),
      );
    }
  }

  #text(out: string[], delta: string): void {
    this.#start(out);
    let o = this.#open;
    if (o?.kind !== 'message') {
      this.#close(out);
      o = { kind: 'message', index: this.#items++, id: messageId(this.#id), text: '' };
      this.#open = o;
      out.push(
        this.#event('response.output_item.added', {
          output_index: o.index,
          item: { id: o.id, type: 'message', status: 'in_progress', role: 'assistant', content: [] },
        }),
        this.#event('response.content_part.added', {
          item_id: o.id,
          output_index: o.index,
          content_index: 0,
          part: outputText(''),
        }),
      );
    }
    o.text += delta;
    this.#sentText += delta;
    out.push(
      this.#event('response.output_text.delta', {
        item_id: o.id,
        output_index: o.index,
        content_index: 0,
        delta,
        logprobs: [],
      }),
    );
  }

  #reasoning(out: string[], delta: string): void {
    this.#start(out);
    let o = this.#open;
    if (o?.kind !== 'reasoning') {
      this.#close(out);
      o = { kind: 'reasoning', index: this.#items++, id: reasoningId(this.#id), text: '', signature: '' };
      this.#open = o;
      const summary = asSummary(this.#req);
      out.push(
        this.#event('response.output_item.added', {
          output_index: o.index,
          item: reasoningItem(o.id, '', 'in_progress', summary),
        }),
        summary
          ? this.#event('response.reasoning_summary_part.added', {
              item_id: o.id,
              output_index: o.index,
              summary_index: 0,
              part: { type: 'summary_text', text: '' },
            })
          : this.#event('response.content_part.added', {
              item_id: o.id,
              output_index: o.index,
              content_index: 0,
              part: { type: 'reasoning_text', text: '' },
            }),
      );
    }
    o.text += delta;
    out.push(
      asSummary(this.#req)
        ? this.#event('response.reasoning_summary_text.delta', {
            item_id: o.id,
            output_index: o.index,
            summary_index: 0,
            delta,
          })
        : this.#event('response.reasoning_text.delta', {
            item_id: o.id,
            output_index: o.index,
            content_index: 0,
            delta,
          }),
    );
  }

  #call(out: string[], pipeline: number, callId: string, name: string, args: string): void {
    this.#start(out);
    let o = this.#open;
    if (!(o?.kind === 'call' && o.pipeline === pipeline)) {
      this.#close(out);
      this.#calls.add(pipeline);
      o = {
        kind: 'call',
        index: this.#items++,
        id: callItemId(this.#id, pipeline),
        callId,
        name,
        args: '',
        pipeline,
      };
      this.#open = o;
      out.push(
        this.#event('response.output_item.added', {
          output_index: o.index,
          item: {
            id: o.id,
            type: 'function_call',
            status: 'in_progress',
            call_id: callId,
            name,
            arguments: '',
          },
        }),
      );
    }
    if (args === '') return;
    o.args += args;
    out.push(
      this.#event('response.function_call_arguments.delta', {
        item_id: o.id,
        output_index: o.index,
        delta: args,
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
      if (f.reasoning) this.#reasoning(out, f.reasoning);
      // Anthropic signs its thinking last, before the block closes.
      if (f.signature && this.#open?.kind === 'reasoning') this.#open.signature += f.signature;
      if (f.text) this.#text(out, f.text);
      if (f.refusal) this.#text(out, f.refusal);
      for (const t of f.tool_calls ?? []) {
        if (!this.#calls.has(t.index) && !(t.id && t.function?.name)) continue;
        this.#call(out, t.index, t.id ?? '', t.function?.name ?? '', t.function?.arguments ?? '');
      }
    } else if (f.type === 'done') {
      const r = f.result;
      if (!this.#started) this.#model = r.model;
      if (this.route.length === 0 && f.route) this.route = f.route;
      this.#start(out);
      const m = r.choices[0]?.message;
      const content = m?.content ?? '';
      if (content.length > this.#sentText.length && content.startsWith(this.#sentText))
        this.#text(out, content.slice(this.#sentText.length));
      (m?.tool_calls ?? []).forEach((t, i) => {
        if (!this.#calls.has(i)) this.#call(out, i, t.id, t.function.name, t.function.arguments);
      });
      this.#close(out);
      const response = toResponse(this.#req, { ...r, id: this.#id, created: this.#created });
      out.push(
        this.#event(response.status === 'completed' ? 'response.completed' : 'response.incomplete', {
          response,
        }),
      );
    } else if (f.type === 'error') {
      out.push(this.error(f.error.code, f.error.message));
    }
    return out.join('');
  }

  /** OpenAI's `error` event: the SDK raises it as an APIError. */
  error(code: ErrorCode, message: string): string {
    const e = errorBody(code, message).error;
    return this.#event('error', { code: e.code, message, param: null, error: e });
  }
}

/** The Responses door for a request: whole answers as response objects, streams as its events. */
export const responsesDoor = (req: ResponsesRequest): Door => ({
  answer: (result) => toResponse(req, result),
  writer: (id, createdMs) => new ResponsesStreamWriter(req, id, createdMs),
});
