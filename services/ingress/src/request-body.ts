import { GatewayError } from '@faregate/contracts/errors';
import { z } from 'zod';
import { verbatim } from './plugins/errors.ts';

export const isObject = (b: unknown): b is Record<string, unknown> =>
  b !== null && typeof b === 'object' && !Array.isArray(b);

/**
 * A route's JSON body: an object whose missing required fields are named in plain words (before the
 * schema's own messages, as OpenAI and Anthropic do), then `schema`.
 */
export function requestBody<T extends z.ZodType>(required: readonly string[], schema: T) {
  return z
    .unknown()
    .superRefine((b, ctx) => {
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
    })
    .pipe(schema);
}

/** Valid JSON refused on purpose: a key that would reach an object's prototype. */
export const prototypeKeyRefused = (what = 'The JSON body') =>
  new GatewayError({
    code: 'invalid_request_error',
    message: `${what} has a property named '__proto__' (or 'constructor' holding 'prototype'), which is refused: rename it.`,
  });

/** A number JSON can write but not hold (`1e400`): stored, it would become `null`, an absent field. */
export const numberOutOfRange = (what = 'The JSON body') =>
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

/** Only text that can hold a prototype key or an out-of-range number is walked (escapes included). */
const SUSPECT = /proto|constructor|\\u|[eE]\+?\d{3}|\d{300}/;

/**
 * JSON text parsed as the HTTP doors parse a body (Fastify's parser, `app.ts`): a `__proto__` key,
 * or a `constructor` holding `prototype`, is refused, and so is a number out of range. For what does
 * not come through that parser: WebSocket messages, batch input lines. Throws a SyntaxError for text
 * that is not JSON, a GatewayError (400) for JSON refused, naming `what`.
 */
export function parseJsonText(text: string, what?: string): unknown {
  if (!SUSPECT.test(text)) return JSON.parse(text);
  try {
    return JSON.parse(text, refuse);
  } catch (e) {
    if (e instanceof Refused)
      throw e.kind === 'prototype' ? prototypeKeyRefused(what) : numberOutOfRange(what);
    throw e;
  }
}
