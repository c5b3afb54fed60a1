import { z } from 'zod';

/**
 * A union of objects told apart by `type`, whose unknown type is refused by name (a plain union says
 * only "Invalid input", at the union's path), listing the types taken; a known type's own issue (a
 * missing field) comes at its exact path. The doors' request schemas (Messages, Responses) use it.
 */
export function byType<
  const T extends readonly [z.core.$ZodTypeDiscriminable, ...z.core.$ZodTypeDiscriminable[]],
>(what: string, options: T) {
  return z.discriminatedUnion('type', options, {
    error: (iss) => {
      if (iss.code !== 'invalid_union') return undefined;
      const type = (iss.input as { type?: unknown } | undefined)?.type;
      const taken = ((iss as { options?: unknown[] }).options ?? []).filter((t) => t != null);
      return `${what} of type ${JSON.stringify(type) ?? 'undefined'} is not supported here; the types taken are ${taken.map((t) => `'${String(t)}'`).join(', ')}.`;
    },
  });
}
