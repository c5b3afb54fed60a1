import { GatewayError } from '@faregate/contracts/errors';
import { withRule } from '@faregate/contracts/refine';
import { z } from 'zod';
import { verbatim } from './plugins/errors.ts';

export const isObject = (b: unknown): b is Record<string, unknown> =>
  b !== null && typeof b === 'object' && !Array.isArray(b);

/**
 * A route's JSON body: an object whose missing required fields are named in plain words (before the
 * schema's own messages, as OpenAI and Anthropic do), then `schema`.
 */
export function requestBody<T extends z.ZodType>(required: readonly string[], schema: T) {
  return withRule(z.unknown(), (b, ctx) => {
    if (!isObject(b)) {
      ctx.addIssue({
        code: 'custom',
        message: 'The request body must be a JSON object.',
        params: verbatim,
      });
      return;
    }
    for (const field of required) {
      if (Object.hasOwn(b, field)) continue;
      ctx.addIssue({
        code: 'custom',
        message: `Missing required parameter: '${field}'.`,
        path: [field],
        params: verbatim,
      });
      return;
    }
  }).pipe(schema);
}

/** Valid JSON refused on purpose: a key that would reach an object's prototype. */
const prototypeKeyRefused = (what = 'The JSON body') =>
  new GatewayError({
    code: 'invalid_request_error',
    message: `${what} has a property named '__proto__' (or 'constructor' holding 'prototype'), which is refused: rename it.`,
  });

/** A number JSON can write but not hold (`1e400`): stored, it would become `null`, an absent field. */
const numberOutOfRange = (what = 'The JSON body') =>
  new GatewayError({
    code: 'invalid_request_error',
    message: `${what} has a number too large to represent (it parses as Infinity).`,
  });

class Refused extends Error {
  readonly kind: 'prototype' | 'range';
  constructor(kind: 'prototype' | 'range') {
    super(kind);
    this.kind = kind;
  }
}

function refuse(this: unknown, key: string, value: unknown): unknown {
  if (key === '__proto__') throw new Refused('prototype');
  if (key === 'constructor' && isObject(value) && Object.hasOwn(value, 'prototype'))
    throw new Refused('prototype');
  if (typeof value === 'number' && !Number.isFinite(value)) throw new Refused('range');
  return value;
}

/** A JSON key `word`, each character as itself or as its `\uXXXX` escape. */
function keyPattern(word: string): string {
  const chars = [...word].map((c) => {
    const hex = c.charCodeAt(0).toString(16).padStart(4, '0');
    const last = hex.slice(3);
    return `(?:${c}|\\\\u${hex.slice(0, 3)}[${last}${last.toUpperCase()}])`;
  });
  return `"${chars.join('')}"`;
}

/**
 * Only text that can hold a prototype key (as written, or escaped a character at a time) or an
 * out-of-range number is walked; any other text (non-ASCII text escaped, as Python's json writes
 * it, included) is parsed as it is. A number reaches Infinity (past 1.8e308) only with an exponent
 * of three digits or more, or with more than 209 digits before its exponent (of at most 99). Each
 * test is its own expression: one alternation of them all is several times slower.
 */
const SUSPECT = [
  new RegExp(keyPattern('__proto__')),
  new RegExp(keyPattern('constructor')),
  /[eE]\+?\d{3}/,
  /[1-9]\d{209}/,
];
const suspect = (text: string) => SUSPECT.some((rx) => rx.test(text));

/**
 * JSON text as the gateway takes it, wherever it comes from (an HTTP body, `app.ts`; a WebSocket
 * message; a batch input line): a `__proto__` key, or a `constructor` holding `prototype`, is
 * refused, and so is a number out of range (sent on to a provider it would become `null`). Throws a
 * SyntaxError for text that is not JSON, a GatewayError (400) for JSON refused, naming `what`.
 */
export function parseJsonText(text: string, what?: string): unknown {
  let value: unknown;
  if (!suspect(text)) value = JSON.parse(text);
  else {
    try {
      value = JSON.parse(text, refuse);
    } catch (e) {
      if (e instanceof Refused)
        throw e.kind === 'prototype' ? prototypeKeyRefused(what) : numberOutOfRange(what);
      throw e;
    }
  }
  if (nestedDeeperThan(value, MAX_JSON_DEPTH)) throw nestedTooDeep(what);
  return value;
}

/**
 * How deep JSON the gateway takes may nest. JSON.parse takes any depth, but every recursive walk
 * after it (validation, token counting, serialization) would overflow the stack on a few thousand
 * levels: a 30 KB body answered 500 and a batch line retried forever. No request needs more (a
 * strict OpenAI schema allows 10 levels).
 */
export const MAX_JSON_DEPTH = 64;

/** Whether `v` nests objects or arrays more than `max` levels deep (stops at the first that does). */
function nestedDeeperThan(v: unknown, max: number): boolean {
  if (v === null || typeof v !== 'object') return false;
  if (max === 0) return true;
  if (Array.isArray(v)) {
    for (const x of v) if (nestedDeeperThan(x, max - 1)) return true;
    return false;
  }
  for (const k in v) if (nestedDeeperThan((v as Record<string, unknown>)[k], max - 1)) return true;
  return false;
}

const nestedTooDeep = (what = 'The JSON body') =>
  new GatewayError({
    code: 'invalid_request_error',
    message: `${what} nests objects or arrays more than ${MAX_JSON_DEPTH} levels deep.`,
  });
