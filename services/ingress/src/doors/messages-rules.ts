import type { AnthropicBlock, AnthropicCountTokensRequest } from '@faregate/contracts/anthropic';
import { invalidParam } from './shared.ts';

/**
 * What Anthropic checks of a Messages request as a whole (turns, tool pairs, tool names, caching
 * breakpoints, base64), checked by the door for every target, in Anthropic's words and at the
 * caller's paths: the one request the pipeline gets has other indices (a system message first, a
 * turn's tool results as messages of their own) and OpenAI's words.
 */

/** A refusal whose message starts with the field's path, as Anthropic's do (its errors carry no param). */
export const refuse = (param: string, message: string) => invalidParam(param, `${param}: ${message}`);

type Message = AnthropicCountTokensRequest['messages'][number];

/** A block of a turn, with where the caller sent it (`messages.2.content.0`). */
export interface Placed {
  block: AnthropicBlock;
  path: string;
}

/**
 * A turn as Anthropic reads it: consecutive messages of one role, merged. `first` is the caller's
 * index of its first message; the content is a lone message's text as it came, or the blocks.
 */
export interface Turn {
  role: 'user' | 'assistant';
  first: number;
  content: string | Placed[];
}

const placed = (content: string | AnthropicBlock[], i: number): Placed[] =>
  typeof content === 'string'
    ? [{ block: { type: 'text', text: content }, path: `messages.${i}.content` }]
    : content.map((block, j) => ({ block, path: `messages.${i}.content.${j}` }));

const isEmpty = (content: string | AnthropicBlock[]): boolean =>
  typeof content === 'string' ? content === '' : content.every((b) => b.type === 'text' && b.text === '');

/**
 * The caller's messages as Anthropic's turns: consecutive same-role messages merged (two assistant
 * messages each with a tool_use, then the results, is one call turn), and an empty final assistant
 * message (Anthropic's optional prefill, left empty) left out: no prefill is the same.
 */
export function turnsOf(messages: readonly Message[]): Turn[] {
  const turns: Turn[] = [];
  messages.forEach((m, i) => {
    if (i === messages.length - 1 && m.role === 'assistant' && isEmpty(m.content)) return;
    const prev = turns.at(-1);
    if (prev?.role !== m.role) {
      turns.push({
        role: m.role,
        first: i,
        content: typeof m.content === 'string' ? m.content : placed(m.content, i),
      });
      return;
    }
    if (typeof prev.content === 'string') prev.content = placed(prev.content, prev.first);
    for (const b of placed(m.content, i)) prev.content.push(b);
  });
  return turns;
}

const ids = (open: Iterable<string>) => [...open].slice(0, 8).join(', ');

const unanswered = (at: number, open: Set<string>) =>
  refuse(
    `messages.${at}`,
    `\`tool_use\` ids were found without \`tool_result\` blocks immediately after: ${ids(open)}. Each \`tool_use\` block must have a corresponding \`tool_result\` block in the next message.`,
  );

/**
 * Anthropic's pairing of calls and results: each `tool_use` of an assistant turn is answered by a
 * `tool_result` in the next turn, and each `tool_result` answers a `tool_use` of the turn before.
 * Every target needs the pairs (OpenAI and Gemini refuse a call without its result too). As
 * Anthropic, a `tool_use` id is used once in the conversation, a call has a single result (the
 * second block is named), and a final assistant turn (the prefill) cannot end in whitespace.
 */
export function checkToolPairs(turns: readonly Turn[]): void {
  let calls = new Set<string>();
  let callsAt = 0;
  const used = new Set<string>();
  for (const t of turns) {
    const blocks = typeof t.content === 'string' ? [] : t.content;
    if (t.role === 'assistant') {
      calls = new Set();
      for (const { block: b, path } of blocks) {
        if (b.type !== 'tool_use') continue;
        if (used.has(b.id)) throw refuse(path, '`tool_use` ids must be unique');
        used.add(b.id);
        calls.add(b.id);
      }
      callsAt = t.first;
      continue;
    }
    const open = new Set(calls);
    const answered = new Set<string>();
    for (const { block: b, path } of blocks) {
      if (b.type !== 'tool_result') continue;
      if (!calls.has(b.tool_use_id))
        throw refuse(
          path,
          `unexpected \`tool_use_id\` found in \`tool_result\` blocks: ${b.tool_use_id}. Each \`tool_result\` block must have a corresponding \`tool_use\` block in the previous message.`,
        );
      if (answered.has(b.tool_use_id))
        throw refuse(
          path,
          `each \`tool_use\` must have a single result. Found multiple \`tool_result\` blocks with id: ${b.tool_use_id}`,
        );
      answered.add(b.tool_use_id);
      open.delete(b.tool_use_id);
    }
    if (open.size > 0) throw unanswered(t.first, open);
    calls = new Set();
  }
  // Calls in the last turn: no result can follow (a prefill cannot end in a call).
  if (calls.size > 0) throw unanswered(callsAt, calls);
  checkPrefill(turns.at(-1));
}

/**
 * A final assistant turn (a prefill the model goes on from) whose text ends in whitespace: Anthropic
 * refuses it (at `messages`), so it is refused here for every target.
 */
function checkPrefill(last: Turn | undefined): void {
  if (last?.role !== 'assistant') return;
  const c = last.content;
  const end = typeof c === 'string' ? undefined : c.at(-1)?.block;
  const text = typeof c === 'string' ? c : end?.type === 'text' ? end.text : '';
  if (/\s$/.test(text))
    throw refuse('messages', 'final assistant content cannot end with trailing whitespace');
}

/**
 * A tool name as every target takes it: OpenAI's pattern and its 64 characters (Anthropic allows
 * up to 128, but the one request goes to whichever provider serves the model).
 */
const TOOL_NAME = /^[a-zA-Z0-9_-]{1,64}$/;

/** Tool names (pattern, unique) and a `tool_choice` that needs tools or names one. */
export function checkTools(req: Pick<AnthropicCountTokensRequest, 'tools' | 'tool_choice'>): void {
  const seen = new Map<string, number>();
  (req.tools ?? []).forEach((t, i) => {
    if (!TOOL_NAME.test(t.name))
      throw refuse(
        `tools.${i}.name`,
        "String should match pattern '^[a-zA-Z0-9_-]{1,64}$' (letters, digits, '_' and '-', at most 64).",
      );
    const other = seen.get(t.name);
    if (other !== undefined)
      throw refuse(`tools.${i}.name`, `Tool names must be unique: '${t.name}' is also tools.${other}.`);
    seen.set(t.name, i);
  });
  const c = req.tool_choice;
  if (c?.type === 'any' && seen.size === 0)
    throw refuse('tool_choice.type', '`any` needs at least one tool in `tools`.');
  if (c?.type === 'tool' && !seen.has(c.name))
    throw refuse('tool_choice.name', `no tool named '${c.name.slice(0, 64)}' in \`tools\`.`);
}

/** Anthropic's most caching breakpoints (`cache_control`) in one request. */
const MAX_BREAKPOINTS = 4;

/**
 * At most four `cache_control` breakpoints, as Anthropic counts them (tools, system, then messages,
 * blocks inside tool results and documents included); the fifth is named.
 */
export function checkBreakpoints(req: AnthropicCountTokensRequest): void {
  const at: string[] = [];
  const mark = (b: object, path: string) => {
    if ('cache_control' in b && b.cache_control) at.push(`${path}.cache_control`);
  };
  const blocks = (list: readonly AnthropicBlock[], path: string) => {
    for (const [k, b] of list.entries()) {
      const here = `${path}.${k}`;
      mark(b, here);
      if (b.type === 'tool_result' && Array.isArray(b.content)) blocks(b.content, `${here}.content`);
      if (b.type === 'document' && b.source.type === 'content' && Array.isArray(b.source.content))
        blocks(b.source.content, `${here}.source.content`);
    }
  };
  for (const [i, t] of (req.tools ?? []).entries()) mark(t, `tools.${i}`);
  if (Array.isArray(req.system)) for (const [i, b] of req.system.entries()) mark(b, `system.${i}`);
  for (const [i, m] of req.messages.entries())
    if (Array.isArray(m.content)) blocks(m.content, `messages.${i}.content`);
  const fifth = at[MAX_BREAKPOINTS];
  if (fifth !== undefined)
    throw refuse(
      fifth,
      `A maximum of ${MAX_BREAKPOINTS} blocks with cache_control may be provided. Found ${at.length}.`,
    );
}

/** Standard base64: its alphabet, then at most two `=` of padding (the length is checked apart). */
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/**
 * Base64 as encoders write it (the standard alphabet, padded to a multiple of 4): anything else
 * would reach the provider as bytes it cannot read. One linear scan (a few ms for 5 MB).
 */
export function checkBase64(data: string, param: string): void {
  if (data.length % 4 !== 0 || !BASE64.test(data))
    throw refuse(
      param,
      'invalid base64 data: send the bytes in standard base64 (A–Z, a–z, 0–9, +, /, padded with =).',
    );
}
