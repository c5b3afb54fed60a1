import { describe, expect, it } from 'vitest';
import { lineTokens, noTokens, sumTokens } from './usage.ts';

describe('lineTokens', () => {
  it("reads a chat completion's usage", () => {
    expect(
      lineTokens({
        prompt_tokens: 12,
        completion_tokens: 30,
        total_tokens: 42,
        prompt_tokens_details: { cached_tokens: 5, audio_tokens: 0 },
        completion_tokens_details: { reasoning_tokens: 20, audio_tokens: 0 },
        cost: 0.0001,
      }),
    ).toEqual({ input: 12, cached: 5, output: 30, reasoning: 20, total: 42 });
  });

  it("reads an embeddings list's usage: input tokens only", () => {
    expect(lineTokens({ prompt_tokens: 7, total_tokens: 7 })).toEqual({
      input: 7,
      cached: 0,
      output: 0,
      reasoning: 0,
      total: 7,
    });
  });

  it("reads a response's usage", () => {
    expect(
      lineTokens({
        input_tokens: 9,
        input_tokens_details: { cached_tokens: 4, cache_write_tokens: 0 },
        output_tokens: 11,
        output_tokens_details: { reasoning_tokens: 3 },
        total_tokens: 20,
      }),
    ).toEqual({ input: 9, cached: 4, output: 11, reasoning: 3, total: 20 });
  });

  it('counts nothing it cannot read: no usage, a bad count; a missing total is input + output', () => {
    expect(lineTokens(undefined)).toEqual(noTokens());
    expect(lineTokens(null)).toEqual(noTokens());
    expect(lineTokens('usage')).toEqual(noTokens());
    expect(
      lineTokens({
        prompt_tokens: -1,
        completion_tokens: 2.5,
        prompt_tokens_details: null,
        total_tokens: 'x',
      }),
    ).toEqual(noTokens());
    expect(lineTokens({ prompt_tokens: 3, completion_tokens: 4 })).toMatchObject({ total: 7 });
  });

  it('sums lines', () => {
    expect(
      sumTokens([
        { input: 1, cached: 2, output: 3, reasoning: 4, total: 4 },
        { input: 10, cached: 20, output: 30, reasoning: 40, total: 40 },
      ]),
    ).toEqual({ input: 11, cached: 22, output: 33, reasoning: 44, total: 44 });
    expect(sumTokens([])).toEqual(noTokens());
  });
});
