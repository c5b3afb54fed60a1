import { describe, expect, it } from 'vitest';
import { embeddingsTokens, embeddingsUsage, float32Base64, toEmbeddingsList } from './embeddings.ts';

describe('embeddings answers', () => {
  it('base64 is the little-endian float32 bytes of the vector', () => {
    const v = [0.5, -1.25, 3.140000104904175, 0];
    const buf = Buffer.from(float32Base64(v), 'base64');
    expect(buf.length).toBe(16);
    expect([0, 1, 2, 3].map((i) => buf.readFloatLE(i * 4))).toEqual(v);
    // Little-endian: 0.5 is 0x3f000000, its last byte first.
    expect([...buf.subarray(0, 4)]).toEqual([0, 0, 0, 0x3f]);
  });

  it('usage: the provider’s count, or ours when it reports none (estimated)', () => {
    const req = { model: 'm', input: ['hello world', 'bye'] };
    expect(embeddingsUsage(req, 7)).toMatchObject({
      usage: { inputTokens: 7, outputTokens: 0 },
      estimated: false,
    });
    const counted = embeddingsUsage(req, undefined);
    expect(counted.estimated).toBe(true);
    expect(counted.usage.inputTokens).toBe(embeddingsTokens(req));
    expect(embeddingsTokens({ model: 'm', input: [[1, 2, 3], [4]] })).toBe(4);
  });

  it('the answer names what served it, in the encoding asked for, with its cost', () => {
    const e = { model: 'x', vectors: [[1, 0]], inputTokens: 3 };
    const usage = {
      inputTokens: 3,
      cachedInputTokens: 0,
      cacheWriteTokens: 0,
      outputTokens: 0,
      reasoningTokens: 0,
    };
    const served = { provider: 'openai', model: 'text-embedding-3-small' };
    const float = toEmbeddingsList(served, { model: 'a', input: 'x' }, e, usage, 1300n);
    expect(float).toEqual({
      object: 'list',
      data: [{ object: 'embedding', index: 0, embedding: [1, 0] }],
      model: 'openai/text-embedding-3-small',
      usage: { prompt_tokens: 3, total_tokens: 3, cost: 0.0013 },
      provider: 'openai',
    });
    const b64 = toEmbeddingsList(served, { model: 'a', input: 'x', encoding_format: 'base64' }, e, usage, 0n);
    expect(b64.data[0]?.embedding).toBe(float32Base64([1, 0]));
  });
});
