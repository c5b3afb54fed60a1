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
