import type {
  ChatCompletion,
  ChatMessage,
  LegacyFunctionCall,
  RequestMessage,
  Tool,
  ToolCall,
  ToolChoice,
} from './chat.ts';

/**
 * OpenAI's legacy function calling (deprecated for tools, still served by OpenAI's chat models and
 * typed by its SDKs), served on every provider by translation at the parse of a request: `functions`
 * become tools, `function_call` the tool choice, an assistant turn's `function_call` one tool call
 * with a synthesized id, and a `role: "function"` message the tool message answering it. Adapters see
 * ordinary tools; a request that used `functions` is marked (`legacy_functions`), and its answer
 * goes back in the legacy shape (`legacyChoice`), written once by the worker.
 */

/** The legacy parts of a caller's request, as its schema parsed them (chat.ts `ChatRequest`). */
export interface LegacyRequest {
  messages: RequestMessage[];
  tools?: Tool[] | undefined;
  tool_choice?: ToolChoice | undefined;
  parallel_tool_calls?: boolean | undefined;
  functions?:
    | Array<{
        name: string;
        description?: string | undefined;
        parameters?: Record<string, unknown> | undefined;
      }>
    | undefined;
  function_call?: 'none' | 'auto' | { name: string } | undefined;
}

/** The request as the gateway carries it (chat.ts `ChatJobRequest`). */
export type Translated<R extends LegacyRequest> = Omit<R, 'messages' | 'functions' | 'function_call'> & {
  messages: ChatMessage[];
  legacy_functions?: true;
};

/** Reports a refused part of the request: its path (`['messages', 3]`) and the whole message. */
export type Refuse = (path: Array<string | number>, message: string) => void;

const isLegacyTurn = (m: RequestMessage): boolean =>
  m.role === 'function' || (m.role === 'assistant' && m.function_call !== undefined);

/** The id of the tool call an assistant turn's `function_call` (at `messages[i]`) becomes: the same for the same history. */
export const legacyCallId = (i: number): string => `call_function_${i}`;

/**
 * The caller's request in the gateway's form; `undefined` when a legacy part is refused (`refuse`
 * was told why). A request without legacy parts (every other one) is returned as it is: no copy.
 */
export function fromLegacyFunctions<R extends LegacyRequest>(
  r: R,
  refuse: Refuse,
): Translated<R> | undefined {
  if (r.functions === undefined && r.function_call === undefined && !r.messages.some(isLegacyTurn))
    return r as unknown as Translated<R>;
  const { functions, function_call, messages, ...rest } = r;
  let refused = false;
  const fail: Refuse = (path, message) => {
    refused = true;
    refuse(path, message);
  };
  // As OpenAI answers each of these.
  if (functions && rest.tools !== undefined) {
    fail(
      ['functions'],
      "Invalid request: 'functions' and 'tools' cannot both be provided. 'functions' are deprecated; use the 'tools' parameter instead.",
    );
    return undefined;
  }
  if (function_call !== undefined && !functions)
    fail(
      ['function_call'],
      "Invalid value for 'function_call': 'function_call' is only allowed when 'functions' are specified.",
    );
  if (functions) {
    for (const p of ['tool_choice', 'parallel_tool_calls'] as const)
      if (rest[p] !== undefined)
        fail([p], `Invalid value for '${p}': '${p}' is only allowed when 'tools' are specified.`);
    if (typeof function_call === 'object' && !functions.some((f) => f.name === function_call.name))
      fail(
        ['function_call'],
        `Invalid value for 'function_call': no function named '${function_call.name.slice(0, 64)}' in 'functions'.`,
      );
  }
  const out = translateMessages(messages, functions !== undefined, fail);
  if (refused || !out) return undefined;
  if (!functions) return { ...rest, messages: out };
  const tool_choice: ToolChoice | undefined =
    typeof function_call === 'object'
      ? { type: 'function', function: { name: function_call.name } }
      : function_call;
  return {
    ...rest,
    messages: out,
    tools: functions.map((f) => ({ type: 'function' as const, function: f })),
    ...(tool_choice === undefined ? {} : { tool_choice }),
    // The legacy answer carries one call: ask the provider for one (where it has no such switch, the
    // call keeps the first; packages/providers/src/call.ts).
    parallel_tool_calls: false,
    legacy_functions: true,
  };
}

/**
 * The history with its legacy turns as tool calls and tool messages. Each function message answers
 * the latest unanswered `function_call` of its name, among the calls of the turns just before it (a
 * call is answered before the conversation goes on, as every provider requires of tool calls).
 */
function translateMessages(
  messages: RequestMessage[],
  functionsUsed: boolean,
  fail: Refuse,
): ChatMessage[] | undefined {
  const out: ChatMessage[] = [];
  /** Calls not answered yet, of the assistant turns before the current run of answers. */
  let open: Array<{ name: string; id: string; at: number }> = [];
  let ok = true;
  const unanswered = () => {
    for (const c of open) {
      ok = false;
      fail(
        ['messages', c.at, 'function_call'],
        `An assistant message with 'function_call' must be followed by a function message (role 'function', name '${c.name.slice(0, 64)}') answering it.`,
      );
    }
    open = [];
  };
  for (let i = 0; i < messages.length; i++) {
    const m = messages[i] as RequestMessage;
    if (m.role === 'function') {
      let k = open.length - 1;
      while (k >= 0 && open[k]?.name !== m.name) k--;
      const call = k >= 0 ? open.splice(k, 1)[0] : undefined;
      if (!call) {
        ok = false;
        fail(
          ['messages', i],
          `Invalid parameter: messages with role 'function' must answer a 'function_call' named '${m.name.slice(0, 64)}' of a preceding assistant message, and none is left unanswered.`,
        );
        continue;
      }
      out.push({ role: 'tool', tool_call_id: call.id, content: m.content ?? '' });
      continue;
    }
    if (m.role !== 'tool') unanswered();
    if (m.role !== 'assistant') {
      out.push(m);
      continue;
    }
    if (functionsUsed && m.tool_calls) {
      ok = false;
      fail(
        ['messages', i, 'tool_calls'],
        "Invalid parameter: 'tool_calls' cannot be used when 'functions' are present. Please use 'tools' instead of 'functions'.",
      );
    }
    const { function_call, ...turn } = m;
    if (!function_call) {
      out.push(turn);
      continue;
    }
    const call: ToolCall = { id: legacyCallId(i), type: 'function', function: callOf(function_call) };
    open.push({ name: function_call.name, id: call.id, at: i });
    out.push({ ...turn, tool_calls: [...(turn.tool_calls ?? []), call] });
  }
  unanswered();
  return ok ? out : undefined;
}

const callOf = (f: LegacyFunctionCall) => ({ name: f.name, arguments: f.arguments });

type Choice = ChatCompletion['choices'][number];

/**
 * A choice of an answer to a request that used `functions`, as OpenAI's legacy mode answers: the
 * message's first tool call as its `function_call` (that mode makes one at most), no `tool_calls`,
 * and `finish_reason: "function_call"` for `"tool_calls"`. A choice without a call is unchanged.
 */
export function legacyChoice(ch: Choice): Choice {
  const { tool_calls, ...message } = ch.message;
  const call = tool_calls?.[0];
  if (!call) return ch;
  return {
    ...ch,
    message: { ...message, function_call: callOf(call.function) },
    finish_reason: ch.finish_reason === 'tool_calls' ? 'function_call' : ch.finish_reason,
  };
}

/**
 * A refusal of a translated request in the terms its caller used: a request that used `functions`
 * sent no `tool_choice`, so a refusal of the tool choice its `function_call` became names
 * `function_call` (a host that cannot force a call refuses `function_call: {name}`).
 */
export function inLegacyTerms<R extends { param: string; message: string }>(
  legacy: boolean,
  refusal: R | undefined,
): R | undefined {
  if (!legacy || refusal?.param !== 'tool_choice') return refusal;
  return {
    ...refusal,
    param: 'function_call',
    message: refusal.message
      .replaceAll("'tool_choice'", "'function_call'")
      .replaceAll('a tool call', 'a function call'),
  };
}
