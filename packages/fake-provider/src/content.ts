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
  /** The request enabled extended thinking (Anthropic `thinking`, Ollama `reasoning_effort`). */
  thinking?: boolean;
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
  reasoningTokens: number;
  /** The thinking text (one token per piece) when the request enabled thinking; else none. */
  thinking?: string[];
  /** Choices 1…n-1 (`n > 1`); the reply itself is choice 0. */
  more: ReplyChoice[];
  /** Output tokens billed: visible pieces (or argument pieces) of every choice + reasoning. */
  completionTokens: number;
}

/** Output tokens of one choice. */
export const choiceTokens = (r: ReplyChoice): number => (r.tool ? r.tool.argPieces.length : r.pieces.length);

/**
 * A deterministic signature for thinking text, in the shape of Anthropic's (opaque base64): the
 * fake, like Anthropic, can tell it made the thinking it is sent back.
 */
export function thinkingSignature(thinking: string): string {
  return Buffer.from(`fake-sig:${fnv1a(thinking).toString(16)}:${thinking.length}`).toString('base64');
}

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
  const s = schema as {
    properties?: Record<string, { type?: unknown; enum?: unknown[] }>;
    required?: string[];
  };
  const props = s?.properties ?? {};
  const names = Array.isArray(s?.required) && s.required.length > 0 ? s.required : Object.keys(props);
  const out: Record<string, unknown> = {};
  for (const name of names) {
    const p = props[name] ?? {};
    const type = String(p.type ?? 'string').toLowerCase();
    if (Array.isArray(p.enum) && p.enum.length > 0) out[name] = p.enum[0];
    else if (type === 'number' || type === 'integer') out[name] = 4;
    else if (type === 'boolean') out[name] = true;
    else if (type === 'array') out[name] = [];
    else if (type === 'object') out[name] = {};
    else out[name] = /unit/i.test(name) ? 'celsius' : 'Oslo';
  }
  return out;
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

function textChoice(c: Conversation, seed: string, wanted: number): ReplyChoice {
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
  // Thinking, when enabled, has text (8 tokens unless the directive says); otherwise only a count.
  const thinking = c.thinking
    ? replyPieces(`thinking about ${c.lastUserText}`, Math.max(1, Math.floor(d?.reasoningTokens ?? 8)))
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
      count: Math.max(1, Math.floor(d?.calls ?? 1)),
    };
    choices = Array.from({ length: count }, () => ({ pieces: [], tool: call, finish: 'tool' as const }));
  } else {
    const wanted = Math.max(1, Math.floor(d?.tokens ?? defaultTokens));
    choices = Array.from({ length: count }, (_, i) => textChoice(c, seedOf(i), wanted));
  }
  const [first, ...more] = choices as [ReplyChoice, ...ReplyChoice[]];
  return {
    promptTokens,
    cachedTokens,
    cacheWriteTokens: 0,
    reasoningTokens,
    ...(thinking ? { thinking } : {}),
    ...first,
    more,
    completionTokens: choices.reduce((n, ch) => n + choiceTokens(ch), 0) + reasoningTokens,
  };
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
