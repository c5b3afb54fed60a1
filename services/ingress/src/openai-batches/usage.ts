import { isObject } from '../request-body.ts';

/** The tokens a batch sums of its lines (its `usage`, OpenAI's BatchUsage, as columns of its row). */
export interface BatchTokens {
  input: number;
  cached: number;
  output: number;
  reasoning: number;
  total: number;
}

export const noTokens = (): BatchTokens => ({ input: 0, cached: 0, output: 0, reasoning: 0, total: 0 });

/** A count as the answer gives it; anything else (absent, negative, not a whole number) counts 0. */
const count = (v: unknown): number => (typeof v === 'number' && Number.isSafeInteger(v) && v > 0 ? v : 0);

const field = (o: unknown, k: string): unknown => (isObject(o) ? o[k] : undefined);

/**
 * The tokens of one line's answer, from its `usage` as its endpoint's door answers it: a chat
 * completion's (`prompt_tokens`, `completion_tokens`, their `_details`), an embeddings list's
 * (`prompt_tokens`, `total_tokens`) or a response's (`input_tokens`, `output_tokens`, their
 * `_details`). `total_tokens` as the answer gives it, else input + output.
 */
export function lineTokens(usage: unknown): BatchTokens {
  if (!isObject(usage)) return noTokens();
  const responses = usage.input_tokens !== undefined || usage.output_tokens !== undefined;
  const input = count(responses ? usage.input_tokens : usage.prompt_tokens);
  const output = count(responses ? usage.output_tokens : usage.completion_tokens);
  const inDetails = responses ? usage.input_tokens_details : usage.prompt_tokens_details;
  const outDetails = responses ? usage.output_tokens_details : usage.completion_tokens_details;
  return {
    input,
    cached: count(field(inDetails, 'cached_tokens')),
    output,
    reasoning: count(field(outDetails, 'reasoning_tokens')),
    total: usage.total_tokens === undefined ? input + output : count(usage.total_tokens),
  };
}

/** The sum of lines' tokens. */
export function sumTokens(lines: BatchTokens[]): BatchTokens {
  const sum = noTokens();
  for (const t of lines) {
    sum.input += t.input;
    sum.cached += t.cached;
    sum.output += t.output;
    sum.reasoning += t.reasoning;
    sum.total += t.total;
  }
  return sum;
}
