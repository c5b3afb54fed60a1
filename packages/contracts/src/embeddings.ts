import { z } from 'zod';
import { absentIfNull } from './chat.ts';

/** OpenAI's cap on inputs per embeddings request (the gateway's too: a bigger list is a 400). */
export const MAX_EMBEDDING_INPUTS = 2048;

const NonEmptyText = z.string().min(1, 'input must not contain empty strings');
const TokenArray = z
  .array(z.number().int().nonnegative())
  .min(1, 'input must not contain empty token arrays')
  .max(1_000_000);

/**
 * The OpenAI embeddings request, as callers send it: one text, a list of texts, one token array,
 * or a list of token arrays. Unknown fields are refused, as OpenAI does.
 */
export const EmbeddingsRequest = z.strictObject({
  model: z.string().min(1).max(256),
  input: z.union(
    [
      NonEmptyText,
      z
        .array(NonEmptyText)
        .min(1, 'input must not be an empty list')
        .max(MAX_EMBEDDING_INPUTS, `input may hold at most ${MAX_EMBEDDING_INPUTS} items`),
      TokenArray,
      z
        .array(TokenArray)
        .min(1, 'input must not be an empty list')
        .max(MAX_EMBEDDING_INPUTS, `input may hold at most ${MAX_EMBEDDING_INPUTS} items`),
    ],
    {
      // The union says only "Invalid input"; a list's size is what most callers get wrong.
      error: (iss) =>
        Array.isArray(iss.input) && iss.input.length > MAX_EMBEDDING_INPUTS
          ? `input may hold at most ${MAX_EMBEDDING_INPUTS} items; it has ${iss.input.length}`
          : Array.isArray(iss.input) && iss.input.length === 0
            ? 'input must not be an empty list'
            : 'input must be a string, a list of strings, a token array or a list of token arrays, none of them empty',
    },
  ),
  // `null` is not given, as on chat (what callers that map unset arguments to `None` send).
  dimensions: absentIfNull(z.number().int().min(1).max(65_536)),
  encoding_format: absentIfNull(z.enum(['float', 'base64'])),
  user: absentIfNull(z.string().max(256)),
});
export type EmbeddingsRequest = z.infer<typeof EmbeddingsRequest>;

/** The request's inputs as a list: texts, or token arrays. */
export function embeddingInputs(req: Pick<EmbeddingsRequest, 'input'>): string[] | number[][] {
  const { input } = req;
  if (typeof input === 'string') return [input];
  if (input.length > 0 && typeof input[0] === 'number') return [input as number[]];
  return input as string[] | number[][];
}

/** What an adapter's parse of an embeddings answer yields: one float vector per input, in input order. */
export interface Embeddings {
  /** The model the provider says served the call. */
  model: string;
  vectors: number[][];
  /** Input tokens as the provider reports them; undefined when it does not (Gemini). */
  inputTokens: number | undefined;
}

/**
 * The HTTP embeddings response (OpenAI's list), also the `result` of an embeddings job's terminal
 * frame. `embedding` is a float list, or with `encoding_format: base64` the little-endian float32
 * bytes in base64, as OpenAI sends them. Loose objects, as `ChatCompletion`: readers keep what
 * they do not know.
 */
export const EmbeddingsList = z.looseObject({
  object: z.literal('list'),
  data: z.array(
    z.looseObject({
      object: z.literal('embedding'),
      index: z.number().int().nonnegative(),
      embedding: z.union([z.array(z.number()), z.string()]),
    }),
  ),
  model: z.string(),
  usage: z.looseObject({
    prompt_tokens: z.number().int().nonnegative(),
    total_tokens: z.number().int().nonnegative(),
    /** What the request cost in USD, as on chat answers. */
    cost: z.number().nonnegative().optional(),
  }),
  /** Faregate: the provider that served the answer (`model` is `<provider>/<model id>`). */
  provider: z.string().optional(),
});
export type EmbeddingsList = z.infer<typeof EmbeddingsList>;
