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
}

export interface ToolSpec {
  name: string;
  /** JSON schema of the arguments, if any. */
  parameters?: unknown;
}

export interface Reply {
  promptTokens: number;
  cachedTokens: number;
  reasoningTokens: number;
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
  /** Output tokens billed: visible pieces (or argument pieces) + reasoning. */
  completionTokens: number;
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

/** The reply the fake gives to a conversation: a pure function of the request and settings. */
export function buildReply(c: Conversation, defaultTokens: number, d: Directive | undefined): Reply {
  const promptTokens = countPromptTokens(c);
  const cachedTokens = Math.min(promptTokens, Math.floor(d?.cachedTokens ?? 0));
  const reasoningTokens = Math.floor(d?.reasoningTokens ?? 0);
  const tool = chooseTool(c, d);
  if (tool) {
    const args = sampleArgs(tool.parameters);
    const argsJson = JSON.stringify(args);
    const argPieces = splitPieces(argsJson);
    return {
      promptTokens,
      cachedTokens,
      reasoningTokens,
      pieces: [],
      tool: { name: tool.name, args, argsJson, argPieces, count: Math.max(1, Math.floor(d?.calls ?? 1)) },
      finish: 'tool',
      completionTokens: argPieces.length + reasoningTokens,
    };
  }
  const wanted = Math.max(1, Math.floor(d?.tokens ?? defaultTokens));
  const cap = c.maxTokens !== undefined ? Math.max(0, Math.floor(c.maxTokens)) : Number.POSITIVE_INFINITY;
  const n = Math.min(wanted, cap);
  return {
    promptTokens,
    cachedTokens,
    reasoningTokens,
    pieces: replyPieces(c.lastUserText, n),
    finish: n < wanted ? 'length' : 'stop',
    completionTokens: n + reasoningTokens,
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
