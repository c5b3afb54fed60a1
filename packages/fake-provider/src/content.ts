import { FAULT_KINDS, type Directive, type FaultKind } from './types.ts';

/** A request reduced to what the fake's replies depend on; each protocol builds one from its body. */
export interface Conversation {
  /** Text of every message (system included), for prompt token counting. */
  texts: string[];
  /** Text of the last user message ('' if none). Seeds the reply and carries directives. */
  lastUserText: string;
  /** True when the conversation ends with a user turn of text (not a tool result). */
  endsWithUserText: boolean;
  tools: ToolSpec[];
  /** `none`: never call tools; `forced`: must call one (OpenAI required, Anthropic any, Gemini ANY). */
  toolMode: 'auto' | 'none' | 'forced';
  /** A specific tool the request forces. */
  forcedTool?: string;
  /** Serialized size of the tool declarations (they count as prompt). */
  toolChars: number;
  maxTokens?: number;
  /** Stop sequences: the reply ends right before the first one it would contain. */
  stop?: string[];
  /** Choices to generate (OpenAI `n`); 1 when absent. */
  choices?: number;
  /**
   * Anthropic's prompt caching: the prompt up to the request's last `cache_control` breakpoint (tools,
   * then system, then messages), by a key of the model and that prefix, and its tokens.
   */
  cachePrefix?: { key: string; tokens: number; ttlMs: number };
  /**
   * The request enabled extended thinking (Anthropic `thinking`, Ollama `reasoning_effort`, Gemini
   * `thinkingConfig.thinkingBudget` above 0).
   */
  thinking?: boolean;
  /** Gemini: the thoughts are billed but not returned (`thinkingConfig.includeThoughts` not set). */
  thoughtsHidden?: boolean;
  /**
   * Structured output: the answer is JSON (OpenAI `response_format`, Anthropic `output_config.format`,
   * Gemini `responseMimeType`), an instance of `schema` when one is given, else an object.
   */
  json?: { schema?: unknown };
  /** false: at most one tool call per answer (OpenAI `parallel_tool_calls`, Anthropic `disable_parallel_tool_use`). */
  parallelToolCalls?: boolean;
  /** OpenAI's Predicted Outputs: the text the answer is predicted to repeat. */
  prediction?: string;
}

export interface ToolSpec {
  name: string;
  /** JSON schema of the arguments, if any. */
  parameters?: unknown;
}

/** One generated answer (OpenAI's `n` asks for several). */
export interface ReplyChoice {
  /** Visible text, one token per piece; empty for a tool call. */
  pieces: string[];
  tool?: {
    name: string;
    args: Record<string, unknown>;
    argsJson: string;
    argPieces: string[];
    /** Parallel calls of the tool in the answer (directive `calls`). */
    count: number;
  };
  finish: 'stop' | 'length' | 'tool';
  /** The stop sequence the reply ended on (its text stops right before it). */
  stopSequence?: string;
}

export interface Reply extends ReplyChoice {
  promptTokens: number;
  cachedTokens: number;
  /** Prompt tokens written to the prompt cache by this request (Anthropic's `cache_creation_input_tokens`). */
  cacheWriteTokens: number;
  /** Of those, written with a 1-hour TTL (Anthropic's `cache_creation.ephemeral_1h_input_tokens`). */
  cacheWrite1hTokens: number;
  reasoningTokens: number;
  /** The thinking text (one token per piece) when the request enabled thinking; else none. */
  thinking?: string[];
  /**
   * Anthropic's thinking in blocks (directive `thinkingBlocks`): each thinking block's pieces (all
   * of them, in order, are `thinking`), and redacted blocks. Absent: one block of `thinking`.
   */
  thinkingBlocks?: ReplyThinkingBlock[];
  /** Choices 1…n-1 (`n > 1`); the reply itself is choice 0. */
  more: ReplyChoice[];
  /** Output tokens billed: visible pieces (or argument pieces) of every choice + reasoning + rejected prediction. */
  completionTokens: number;
  /** Predicted Outputs: predicted words the answer has (accepted) and the others (rejected, billed as output). */
  prediction?: { accepted: number; rejected: number };
}

/** Output tokens of one choice. */
export const choiceTokens = (r: ReplyChoice): number =>
  r.tool ? r.tool.argPieces.length * r.tool.count : r.pieces.length;

/**
 * A deterministic signature for thinking text, in the shape of Anthropic's (opaque base64): the
 * fake, like Anthropic, can tell it made the thinking it is sent back.
 */
export function thinkingSignature(thinking: string): string {
  return Buffer.from(`fake-sig:${fnv1a(thinking).toString(16)}:${thinking.length}`).toString('base64');
}

/** A block of a reply's thinking, before the protocol signs it. */
export type ReplyThinkingBlock = { type: 'thinking'; pieces: string[] } | { type: 'redacted_thinking' };

/**
 * The directive asking for Anthropic's thinking in several blocks, in order, e.g.
 * `[[fake:{"thinkingBlocks":["thinking","redacted_thinking","thinking"]}]]` (with thinking on).
 */
export type ThinkingLayout = Array<'thinking' | 'redacted_thinking'>;
type WithLayout = Directive & { thinkingBlocks?: ThinkingLayout };

/**
 * Signs the blocks of a multi-block answer as Anthropic would have them back: each bound to its
 * place among the answer's `n` blocks (`answer` names the answer), so a block dropped, moved or
 * altered is told apart from the answer as given. A thinking block's signature vouches for its
 * text as `thinkingSignature` does; a redacted block's data is opaque, checked by its own tag.
 */
export function signThinkingBlocks(
  blocks: ReplyThinkingBlock[],
  answer: string,
): Array<
  { type: 'thinking'; thinking: string; signature: string } | { type: 'redacted_thinking'; data: string }
> {
  const n = blocks.length;
  return blocks.map((b, k) => {
    const place = `${answer}:${k}/${n}`;
    if (b.type === 'redacted_thinking') {
      const tag = fnv1a(`redacted:${place}`).toString(16);
      return {
        type: 'redacted_thinking',
        data: Buffer.from(`fake-redacted:${place}:${tag}`).toString('base64'),
      };
    }
    const thinking = b.pieces.join('');
    return {
      type: 'thinking',
      thinking,
      signature: Buffer.from(`fake-sig:${fnv1a(thinking).toString(16)}:${thinking.length}:${place}`).toString(
        'base64',
      ),
    };
  });
}

/**
 * Checks an assistant turn's thinking as sent back: `undefined` when every block is as the fake
 * gave it and, for a multi-block answer, all of its blocks are there in their order; else the
 * offending content index and Anthropic's kind of complaint.
 */
export function checkThinkingBlocks(
  content: Array<Record<string, unknown>>,
): { at: number; problem: 'signature' | 'data' | 'order' } | undefined {
  /** Per answer: the places seen, in order, and how many blocks it had. */
  const answers = new Map<string, { seen: number[]; n: number; at: number }>();
  for (const [j, blk] of content.entries()) {
    let place: string | undefined;
    if (blk?.type === 'thinking') {
      const sig = typeof blk.signature === 'string' ? decode(blk.signature) : '';
      const thinking = typeof blk.thinking === 'string' ? blk.thinking : '';
      const m = /^fake-sig:([0-9a-f]+):(\d+)(?::(.+))?$/.exec(sig);
      if (!m || m[1] !== fnv1a(thinking).toString(16) || Number(m[2]) !== thinking.length)
        return { at: j, problem: 'signature' };
      place = m[3];
    } else if (blk?.type === 'redacted_thinking' && typeof blk.data === 'string') {
      const m = /^fake-redacted:(.+):([0-9a-f]+)$/.exec(decode(blk.data));
      // Data the fake did not mint is taken as Anthropic's own would be (opaque).
      if (!m) continue;
      if (m[2] !== fnv1a(`redacted:${m[1]}`).toString(16)) return { at: j, problem: 'data' };
      place = m[1];
    }
    const p = place ? /^(.+):(\d+)\/(\d+)$/.exec(place) : null;
    if (!p) continue;
    const a = answers.get(p[1]!) ?? { seen: [], n: Number(p[3]), at: j };
    a.seen.push(Number(p[2]));
    answers.set(p[1]!, a);
  }
  for (const a of answers.values())
    if (a.seen.length !== a.n || a.seen.some((k, i) => k !== i)) return { at: a.at, problem: 'order' };
  return undefined;
}

const decode = (b64: string): string => Buffer.from(b64, 'base64').toString('utf8');

/** One token's log probability, stable for the token and its position. */
export function tokenLogprob(token: string, position: number): number {
  return -((fnv1a(`${position}:${token}`) % 40000) / 10000);
}

/** Prompt tokens: ceil(chars/4) + 3 per message, plus the tool declarations. Simple and deterministic. */
export function countPromptTokens(c: Conversation): number {
  let n = Math.ceil(c.toolChars / 4);
  for (const t of c.texts) n += Math.ceil(t.length / 4) + 3;
  return n;
}

const DIRECTIVE = /\[\[fake:(\{.*?\})\]\]/s;

/** Parses a `[[fake:{…}]]` directive. Throws with a readable message when it is malformed. */
export function parseDirective(text: string): Directive | undefined {
  if (!text.includes('[[fake:')) return undefined;
  const m = DIRECTIVE.exec(text);
  if (!m) throw new Error('fake: a [[fake:{…}]] directive must hold a JSON object');
  let raw: unknown;
  try {
    raw = JSON.parse(m[1]!);
  } catch {
    throw new Error(`fake: the directive is not valid JSON: ${m[1]}`);
  }
  return normalizeDirective(raw);
}

/** Validates a directive or a scripted fault (numbers like `"fault": 500` are accepted). */
export function normalizeDirective(raw: unknown): Directive {
  if (!raw || typeof raw !== 'object' || Array.isArray(raw))
    throw new Error('fake: a fault must be an object');
  const d = { ...(raw as Record<string, unknown>) } as Directive & { fault?: unknown };
  if (d.fault !== undefined) {
    const f = String(d.fault);
    if (!(FAULT_KINDS as readonly string[]).includes(f)) {
      throw new Error(`fake: unknown fault ${JSON.stringify(d.fault)}; one of ${FAULT_KINDS.join(', ')}`);
    }
    d.fault = f as FaultKind;
  }
  for (const k of [
    'afterChunks',
    'burstTokens',
    'retryAfterMs',
    'chunkMs',
    'bytes',
    'tokens',
    'cachedTokens',
    'reasoningTokens',
    'calls',
  ]) {
    const v = (d as Record<string, unknown>)[k];
    if (v !== undefined && (typeof v !== 'number' || !Number.isFinite(v) || v < 0)) {
      throw new Error(`fake: ${k} must be a non-negative number`);
    }
  }
  const layout = (d as WithLayout).thinkingBlocks;
  if (
    layout !== undefined &&
    (!Array.isArray(layout) ||
      layout.length === 0 ||
      layout.some((t) => t !== 'thinking' && t !== 'redacted_thinking'))
  ) {
    throw new Error('fake: thinkingBlocks must be a non-empty list of "thinking" and "redacted_thinking"');
  }
  if (d.tail !== undefined && d.tail !== 'line' && d.tail !== 'half') {
    throw new Error('fake: tail must be "line" or "half"');
  }
  return d as Directive;
}

const WORDS = (
  'the quick brown fox jumps over lazy dog river stone light shadow north south garden window ' +
  'paper signal engine harbor market silver copper meadow thunder candle forest bridge lantern ' +
  'orbit planet comet galaxy ocean desert canyon summit valley island breeze ember frost meadow ' +
  'quiet bright gentle rapid steady hollow golden amber crimson violet azure echo pulse vector'
).split(' ');

/** FNV-1a: a fast, stable 32-bit hash of the text that seeds the reply. */
function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** Deterministic reply text: `n` pieces of one word each, the first capitalized, the last with a period. */
export function replyPieces(seedText: string, n: number): string[] {
  let x = fnv1a(seedText) || 1;
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    // xorshift32: cheap and deterministic across platforms.
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    const w = WORDS[x % WORDS.length]!;
    let piece = i === 0 ? w.charAt(0).toUpperCase() + w.slice(1) : ` ${w}`;
    if (i === n - 1) piece += '.';
    out.push(piece);
  }
  return out;
}

function sampleArgs(schema: unknown): Record<string, unknown> {
  const v = sampleValue(schema, schema, '', 0);
  return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
}

type Schema = {
  type?: unknown;
  enum?: unknown[];
  const?: unknown;
  properties?: Record<string, unknown>;
  required?: unknown;
  items?: unknown;
  prefixItems?: unknown[];
  minItems?: number;
  anyOf?: unknown[];
  oneOf?: unknown[];
  allOf?: unknown[];
  $ref?: string;
  format?: string;
  minimum?: number;
  exclusiveMinimum?: number;
  maximum?: number;
  minLength?: number;
  default?: unknown;
};

/** A definition `ref` names inside `root` (`#/$defs/X`, `#/definitions/X`, `#`), or undefined. */
function resolveRef(root: unknown, ref: string): unknown {
  if (ref === '#') return root;
  if (!ref.startsWith('#/')) return undefined;
  let at: unknown = root;
  for (const raw of ref.slice(2).split('/')) {
    const part = raw.replaceAll('~1', '/').replaceAll('~0', '~');
    if (at === null || typeof at !== 'object' || !Object.hasOwn(at, part)) return undefined;
    at = (at as Record<string, unknown>)[part];
  }
  return at;
}

/**
 * A value that satisfies `schema` (JSON Schema, or Gemini's OpenAPI subset with upper-case types),
 * as a model following it would write: every property (strict schemas require them all), one item
 * per array, the first of an enum or a union. Plausible strings for names a demo shows (a city, a
 * unit) and common formats; a `pattern` is not followed. A recursive schema ends: deeper than a few
 * levels, arrays get their fewest items and objects their required properties only.
 */
export function sampleValue(schema: unknown, root: unknown, name: string, depth: number): unknown {
  const s = (schema ?? {}) as Schema;
  if (typeof s.$ref === 'string') {
    const target = depth < 64 ? resolveRef(root, s.$ref) : undefined;
    return target === undefined ? null : sampleValue(target, root, name, depth + 1);
  }
  if (s.const !== undefined) return s.const;
  if (Array.isArray(s.enum) && s.enum.length > 0) return s.enum[0];
  const union = s.anyOf ?? s.oneOf;
  if (Array.isArray(union) && union.length > 0) {
    const nonNull = union.find((u) => String((u as Schema)?.type ?? '').toLowerCase() !== 'null');
    return sampleValue(nonNull ?? union[0], root, name, depth + 1);
  }
  if (Array.isArray(s.allOf) && s.allOf.length > 0) {
    const merged: Record<string, unknown> = {};
    for (const part of s.allOf) {
      const v = sampleValue(part, root, name, depth + 1);
      if (v !== null && typeof v === 'object' && !Array.isArray(v)) Object.assign(merged, v);
      else return v;
    }
    return merged;
  }
  const types = (Array.isArray(s.type) ? s.type : [s.type]).map((t) => String(t ?? '').toLowerCase());
  const type =
    types.find((t) => t !== 'null' && t !== '') ?? (s.properties ? 'object' : s.items ? 'array' : 'string');
  switch (type) {
    case 'object': {
      const out: Record<string, unknown> = {};
      if (depth >= 64) return out;
      const props = s.properties ?? {};
      // Every property near the top (strict schemas require them all); deeper, the required ones
      // only, so a recursive schema ends.
      const required = Array.isArray(s.required) ? new Set(s.required as unknown[]) : undefined;
      for (const key of Object.keys(props))
        if (depth < 12 || !required || required.has(key))
          out[key] = sampleValue(props[key], root, key, depth + 1);
      return out;
    }
    case 'array': {
      if (Array.isArray(s.prefixItems))
        return s.prefixItems.map((p) => sampleValue(p, root, name, depth + 1));
      // One item near the top; deeper, as few as the schema allows (a recursive schema ends here).
      const min = Math.max(0, Math.floor(s.minItems ?? 0));
      const n = depth < 6 ? Math.max(1, min) : min;
      return Array.from({ length: Math.min(n, 3) }, () => sampleValue(s.items, root, name, depth + 1));
    }
    case 'integer':
    case 'number': {
      const lo = s.minimum ?? (s.exclusiveMinimum !== undefined ? s.exclusiveMinimum + 1 : undefined);
      let n = lo !== undefined ? Math.max(lo, 4) : 4;
      if (s.maximum !== undefined) n = Math.min(n, s.maximum);
      return type === 'integer' ? Math.ceil(n) : n;
    }
    case 'boolean':
      return true;
    case 'null':
      return null;
    default: {
      if (s.format === 'date-time') return '2025-01-01T12:00:00Z';
      if (s.format === 'date') return '2025-01-01';
      if (s.format === 'email') return 'user@example.com';
      if (s.format === 'uri') return 'https://example.com';
      if (s.format === 'uuid') return '00000000-0000-4000-8000-000000000000';
      if (s.format === 'time') return '12:00:00Z';
      const word = /unit/i.test(name) ? 'celsius' : /name/i.test(name) ? 'Ada' : 'Oslo';
      return word.padEnd(Math.max(word.length, s.minLength ?? 0), 'o');
    }
  }
}

/** Splits a string into pieces of about `size` characters (tool-argument fragments, one token each). */
export function splitPieces(s: string, size = 6): string[] {
  const out: string[] = [];
  for (let i = 0; i < s.length; i += size) out.push(s.slice(i, i + size));
  return out.length > 0 ? out : [''];
}

function chooseTool(c: Conversation, d: Directive | undefined): ToolSpec | undefined {
  if (c.tools.length === 0 || c.toolMode === 'none') return undefined;
  const byName = (name: string) => c.tools.find((t) => t.name === name);
  if (typeof d?.tool === 'string') return byName(d.tool) ?? c.tools[0];
  const forced = c.toolMode === 'forced' || d?.tool === true;
  const asked = c.endsWithUserText && /\bweather\b/i.test(c.lastUserText);
  if (!forced && !asked) return undefined;
  if (c.forcedTool) return byName(c.forcedTool) ?? c.tools[0];
  return c.tools.find((t) => /weather/i.test(t.name)) ?? c.tools[0];
}

/** Cuts pieces right before the first stop sequence their text contains (as providers do). */
function cutAtStop(pieces: string[], stops: string[] | undefined): { pieces: string[]; stop?: string } {
  if (!stops?.length) return { pieces };
  const text = pieces.join('');
  let at = -1;
  let stop: string | undefined;
  for (const s of stops) {
    const i = s === '' ? -1 : text.indexOf(s);
    if (i >= 0 && (at < 0 || i < at)) {
      at = i;
      stop = s;
    }
  }
  if (at < 0) return { pieces };
  const out: string[] = [];
  let len = 0;
  for (const p of pieces) {
    if (len + p.length <= at) out.push(p);
    else {
      if (at > len) out.push(p.slice(0, at - len));
      break;
    }
    len += p.length;
  }
  return { pieces: out, stop };
}

/** The JSON answer of a structured-output request (`c.json`), cut at the output cap as text is. */
function jsonChoice(c: Conversation, seed: string): ReplyChoice {
  const { schema } = c.json ?? {};
  const value =
    schema !== undefined
      ? sampleValue(schema, schema, '', 0)
      : { answer: replyPieces(seed, 8).join('').trim() };
  const all = splitPieces(JSON.stringify(value));
  const cap = c.maxTokens !== undefined ? Math.max(0, Math.floor(c.maxTokens)) : Number.POSITIVE_INFINITY;
  return all.length > cap ? { pieces: all.slice(0, cap), finish: 'length' } : { pieces: all, finish: 'stop' };
}

function textChoice(c: Conversation, seed: string, wanted: number): ReplyChoice {
  if (c.json) return jsonChoice(c, seed);
  const cap = c.maxTokens !== undefined ? Math.max(0, Math.floor(c.maxTokens)) : Number.POSITIVE_INFINITY;
  const n = Math.min(wanted, cap);
  const cut = cutAtStop(replyPieces(seed, n), c.stop);
  if (cut.stop !== undefined) return { pieces: cut.pieces, finish: 'stop', stopSequence: cut.stop };
  return { pieces: cut.pieces, finish: n < wanted ? 'length' : 'stop' };
}

/** The reply the fake gives to a conversation: a pure function of the request and settings. */
export function buildReply(c: Conversation, defaultTokens: number, d: Directive | undefined): Reply {
  const promptTokens = countPromptTokens(c);
  const cachedTokens = Math.min(promptTokens, Math.floor(d?.cachedTokens ?? 0));
  // Thinking, when enabled, has text (8 tokens unless the directive says, per block when it asks
  // for several); otherwise only a count.
  const perBlock = Math.max(1, Math.floor(d?.reasoningTokens ?? 8));
  const layout = c.thinking ? (d as WithLayout | undefined)?.thinkingBlocks : undefined;
  const blocks: ReplyThinkingBlock[] | undefined = layout?.map((type, k) =>
    type === 'redacted_thinking'
      ? { type }
      : { type, pieces: replyPieces(`thinking ${k} about ${c.lastUserText}`, perBlock) },
  );
  const thinking = blocks
    ? blocks.flatMap((b) => (b.type === 'thinking' ? b.pieces : []))
    : c.thinking
      ? replyPieces(`thinking about ${c.lastUserText}`, perBlock)
      : undefined;
  const reasoningTokens = thinking ? thinking.length : Math.floor(d?.reasoningTokens ?? 0);
  const count = Math.max(1, Math.floor(c.choices ?? 1));
  // Choice 0 is seeded by the last user text; choice i by the text and i (different answers).
  const seedOf = (i: number) => (i === 0 ? c.lastUserText : `${c.lastUserText}#${i}`);
  const tool = chooseTool(c, d);
  let choices: ReplyChoice[];
  if (tool) {
    const args = sampleArgs(tool.parameters);
    const argsJson = JSON.stringify(args);
    const argPieces = splitPieces(argsJson);
    const call = {
      name: tool.name,
      args,
      argsJson,
      argPieces,
      count: c.parallelToolCalls === false ? 1 : Math.max(1, Math.floor(d?.calls ?? 1)),
    };
    choices = Array.from({ length: count }, () => ({ pieces: [], tool: call, finish: 'tool' as const }));
  } else {
    const wanted = Math.max(1, Math.floor(d?.tokens ?? defaultTokens));
    choices = Array.from({ length: count }, (_, i) => textChoice(c, seedOf(i), wanted));
  }
  const [first, ...more] = choices as [ReplyChoice, ...ReplyChoice[]];
  const prediction = c.prediction !== undefined ? predictionOf(c.prediction, first) : undefined;
  return {
    promptTokens,
    cachedTokens,
    cacheWriteTokens: 0,
    cacheWrite1hTokens: 0,
    reasoningTokens,
    ...(thinking ? { thinking } : {}),
    ...(blocks ? { thinkingBlocks: blocks } : {}),
    ...first,
    more,
    completionTokens:
      choices.reduce((n, ch) => n + choiceTokens(ch), 0) + reasoningTokens + (prediction?.rejected ?? 0),
    ...(prediction ? { prediction } : {}),
  };
}

/**
 * Predicted Outputs, as OpenAI counts them: a predicted word (one token, like the reply's) the
 * answer has is accepted, the others are rejected, and rejected ones are billed as output.
 */
function predictionOf(predicted: string, answer: ReplyChoice): { accepted: number; rejected: number } {
  const words = predicted.split(/\s+/).filter(Boolean);
  const left = new Map<string, number>();
  for (const p of answer.pieces) {
    const w = p.trim();
    left.set(w, (left.get(w) ?? 0) + 1);
  }
  let accepted = 0;
  for (const w of words) {
    const n = left.get(w) ?? 0;
    if (n > 0) {
      accepted++;
      left.set(w, n - 1);
    }
  }
  return { accepted, rejected: words.length - accepted };
}

/** Text of a content value that is a string or an array of parts with `text` fields. */
export function textOf(content: unknown): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  let s = '';
  for (const p of content) {
    if (p && typeof p === 'object' && typeof (p as { text?: unknown }).text === 'string') {
      s += (s ? '\n' : '') + (p as { text: string }).text;
    }
  }
  return s;
}
