import type { ChatMessage, ChatRequest, ContentPart } from '@faregate/contracts/chat';
import type { ResponsesFormat, ResponsesInputPart, ResponsesRequest } from '@faregate/contracts/responses';
import { openThinking } from './reasoning.ts';
import { LOGPROBS, toResponse } from './responses-output.ts';
import { ResponsesStreamWriter } from './responses-stream.ts';
import { type Door, type DoorNames, invalidParam } from './shared.ts';

/**
 * The OpenAI Responses door: pure translations between the Responses API and the gateway's one
 * internal request (the chat shape), stateless (answers: responses-output.ts, streams:
 * responses-stream.ts). `previous_response_id` and `store: true` need
 * responses kept by the gateway, which it does not do (yet): refused with a 400 naming them.
 */

const invalid = invalidParam;

type Part = Extract<ContentPart, { type: 'text' | 'image_url' | 'file' }>;

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
          `${param}.${p.file_id != null ? 'file_id' : 'image_url'}`,
          'Images are taken by image_url (an http(s) or data: URL); file_id needs stored files.',
        );
      return {
        type: 'image_url',
        image_url: { url: p.image_url, ...(p.detail ? { detail: p.detail } : {}) },
      };
    case 'input_file':
      // The chat request's file part (a data: URL or a stored file's id), as the chat door takes it.
      if (p.file_url != null)
        throw invalid(
          `${param}.file_url`,
          'Files are taken by file_data (a data: URL) or file_id; file_url is not supported by this gateway.',
        );
      if (p.file_data == null && p.file_id == null)
        throw invalid(`${param}.file_data`, 'An input_file needs file_data (a data: URL) or file_id.');
      return {
        type: 'file',
        file: {
          ...(p.file_data != null ? { file_data: p.file_data } : {}),
          ...(p.file_id != null ? { file_id: p.file_id } : {}),
          ...(p.filename != null ? { filename: p.filename } : {}),
        },
      };
  }
}

const textOf = (parts: ResponsesInputPart[]) =>
  parts
    .map((p) =>
      p.type === 'refusal' ? p.refusal : p.type === 'input_image' || p.type === 'input_file' ? '' : p.text,
    )
    .join('');

type AssistantMessage = Extract<ChatMessage, { role: 'assistant' }>;

/** An assistant turn begun by a reasoning item that nothing (text, calls) has joined yet. */
const thinkingOnly = (m: ChatMessage | undefined): m is AssistantMessage =>
  m?.role === 'assistant' && m.content == null && !m.tool_calls?.length && !!m.thinking_blocks?.length;

/** The input item a chat message came from, and the items of its tool calls (by call_id). */
interface Origin {
  item: number;
  calls: Map<string, number>;
}

/**
 * Where each chat message came from, in `names` (see `DoorNames`): its content parts
 * (`messages.3.content.1` → `input.2.content.1`, a function output's `input.2.output.1`), and the
 * pipeline's refusals of tool calls and results said as the Responses API says them, naming the
 * item: a `function_call` with no `function_call_output` after it, an output answering no call, a
 * call's `arguments` a target cannot take.
 */
function nameTurns(turns: ChatMessage[], origins: Map<ChatMessage, Origin>, names: DoorNames): void {
  for (const [n, m] of turns.entries()) {
    const o = origins.get(m);
    if (!o) continue;
    const input = `input.${o.item}`;
    if (m.role !== 'assistant' && Array.isArray(m.content))
      for (const k of m.content.keys())
        names[`messages.${n}.content.${k}`] = `${input}.${m.role === 'tool' ? 'output' : 'content'}.${k}`;
    if (m.role === 'tool') {
      const prev = turns.slice(0, n).findLastIndex((t) => t.role !== 'tool');
      const twice = turns
        .slice(prev + 1, n)
        .some((t) => t.role === 'tool' && t.tool_call_id === m.tool_call_id);
      const term = twice
        ? {
            param: input,
            message: `More than one 'function_call_output' item answers the call_id '${m.tool_call_id.slice(0, 64)}': a function call takes a single output.`,
          }
        : {
            param: input,
            message: `No function call found for the 'function_call_output' item with call_id '${m.tool_call_id.slice(0, 64)}': its call_id must match a 'function_call' item right before its run of outputs.`,
          };
      names[`messages.${n}.role`] = term;
      names[`messages.${n}.tool_call_id`] = term;
    }
    if (m.role !== 'assistant' || !m.tool_calls?.length) continue;
    // A call's arguments are its `function_call` item's.
    for (const [j, c] of m.tool_calls.entries())
      names[`messages.${n}.tool_calls.${j}.function.arguments`] =
        `input.${o.calls.get(c.id) ?? o.item}.arguments`;
    const answered = new Set<string>();
    for (let j = n + 1; turns[j]?.role === 'tool'; j++) {
      const t = turns[j];
      if (t?.role === 'tool') answered.add(t.tool_call_id);
    }
    const open = m.tool_calls.find((c) => !answered.has(c.id));
    if (open)
      names[`messages.${n}.tool_calls`] = {
        param: `input.${o.calls.get(open.id) ?? o.item}`,
        message: `No tool output found for function call ${open.id.slice(0, 64)}: a 'function_call' item must be followed by a 'function_call_output' item with its call_id.`,
      };
  }
}

function messagesOf(req: ResponsesRequest, names?: DoorNames): ChatMessage[] {
  const out: ChatMessage[] = [];
  const origins = new Map<ChatMessage, Origin>();
  const push = (m: ChatMessage, item: number) => {
    out.push(m);
    origins.set(m, { item, calls: new Map() });
  };
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
      if (last?.role === 'assistant') {
        last.tool_calls = [...(last.tool_calls ?? []), call];
        origins.get(last)?.calls.set(call.id, i);
      } else {
        push({ role: 'assistant', content: null, tool_calls: [call] }, i);
        origins.get(out[out.length - 1]!)?.calls.set(call.id, i);
      }
    } else if (item.type === 'function_call_output') {
      const o = item.output;
      push(
        {
          role: 'tool',
          tool_call_id: item.call_id,
          content: typeof o === 'string' ? o : o.map((p, k) => partOf(p, `${param}.output.${k}`)),
        },
        i,
      );
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
      else push({ role: 'assistant', content: null, thinking_blocks: blocks }, i);
    } else if (item.role === 'assistant') {
      const content = typeof item.content === 'string' ? item.content : textOf(item.content);
      const last = out[out.length - 1];
      if (thinkingOnly(last)) last.content = content;
      else push({ role: 'assistant', content }, i);
    } else {
      const c = item.content;
      push(
        {
          role: item.role,
          content: typeof c === 'string' ? c : c.map((p, k) => partOf(p, `${param}.content.${k}`)),
        },
        i,
      );
    }
  });
  // Thinking that no text or call followed is no turn of its own.
  const turns = out.filter((m) => !thinkingOnly(m));
  if (turns.length === 0) throw invalid('input', 'The input has no message.');
  if (names) nameTurns(turns, origins, names);
  return turns;
}

function formatOf(f: ResponsesFormat | null | undefined): ChatRequest['response_format'] {
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
const INCLUDES: ReadonlySet<string> = new Set(['reasoning.encrypted_content', LOGPROBS]);

/**
 * What the gateway cannot do because it keeps nothing between requests: each parameter, whether the
 * request uses it, and the rest of its refusal (after the parameter's name).
 */
const STATEFUL: ReadonlyArray<readonly [string, (r: ResponsesRequest) => boolean, string]> = [
  [
    'previous_response_id',
    (r) => r.previous_response_id != null,
    ' is not supported: this gateway does not keep responses. Send the whole conversation in `input`.',
  ],
  [
    'store',
    (r) => r.store === true,
    ': true is not supported: this gateway does not keep responses. Send store: false or leave it out.',
  ],
  [
    'conversation',
    (r) => r.conversation != null,
    ' is not supported: this gateway does not keep conversations. Send the whole conversation in `input`.',
  ],
  [
    'prompt',
    (r) => r.prompt != null,
    ' is not supported: this gateway keeps no prompt templates. Send the instructions and input themselves.',
  ],
  [
    'background',
    (r) => r.background === true,
    ': true is not supported: this gateway does not keep responses to poll. Stream the response, or submit it as a job (POST /v1/jobs).',
  ],
];

/**
 * `POST /v1/responses` body → the internal chat request; stateful parameters are refused here.
 * `metadata` belongs to the response object (echoed in the answer), not to the model's request.
 * The pipeline's refusals are said in this door's terms by `names` (`RESPONSES_PARAMS`, and where
 * each message and part came from, recorded here).
 */
export function toChatRequest(req: ResponsesRequest, names?: DoorNames): ChatRequest {
  for (const [param, used, message] of STATEFUL) if (used(req)) throw invalid(param, `${param}${message}`);
  for (const [i, v] of (req.include ?? []).entries())
    if (!INCLUDES.has(v))
      throw invalid(
        `include.${i}`,
        `include '${v}' is not supported by this gateway; it serves ${[...INCLUDES].map((x) => `'${x}'`).join(', ')}.`,
      );
  const chat: ChatRequest = { model: req.model, messages: messagesOf(req, names) };
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
  if (c != null)
    chat.tool_choice = typeof c === 'string' ? c : { type: 'function', function: { name: c.name } };
  if (req.parallel_tool_calls != null) chat.parallel_tool_calls = req.parallel_tool_calls;
  const format = formatOf(req.text?.format);
  if (format) chat.response_format = format;
  if (req.text?.verbosity != null) chat.verbosity = req.text.verbosity;
  const effort = req.reasoning?.effort;
  if (effort && effort !== 'none') chat.reasoning_effort = effort;
  if (req.max_output_tokens != null) chat.max_completion_tokens = req.max_output_tokens;
  if (req.temperature != null) chat.temperature = req.temperature;
  if (req.top_p != null) chat.top_p = req.top_p;
  if (req.user) chat.user = req.user;
  if (req.safety_identifier) chat.safety_identifier = req.safety_identifier;
  if (req.service_tier != null) chat.service_tier = req.service_tier;
  if (req.prompt_cache_key != null) chat.prompt_cache_key = req.prompt_cache_key;
  if (req.prompt_cache_retention != null) chat.prompt_cache_retention = req.prompt_cache_retention;
  if (req.include?.includes(LOGPROBS)) {
    chat.logprobs = true;
    if (req.top_logprobs != null) chat.top_logprobs = req.top_logprobs;
  }
  return chat;
}

/** The chat parameters this door fills, by the names its callers use (for the pipeline's refusals). */
export const RESPONSES_PARAMS: Readonly<Record<string, string>> = {
  max_completion_tokens: 'max_output_tokens',
  // The 402's advice when no output cap was sent (submit.ts).
  max_tokens: 'max_output_tokens',
  response_format: 'text.format',
  verbosity: 'text.verbosity',
  reasoning_effort: 'reasoning.effort',
  logprobs: 'include',
};

/** The Responses door for a request: whole answers as response objects, streams as its events. */
export const responsesDoor = (req: ResponsesRequest): Door => ({
  answer: (result, atMs) => toResponse(req, result, atMs),
  writer: (id, createdMs) => new ResponsesStreamWriter(req, id, createdMs),
});
