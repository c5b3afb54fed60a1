import type { EmbeddingsRequest } from '@faregate/contracts/embeddings';
import type { GatewayError } from '@faregate/contracts/errors';
import { fakeVector } from '@faregate/fake-provider/embeddings';
import { type FakeProvider, startFakeProvider } from '@faregate/fake-provider/server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { callEmbeddings, closeHttp } from './call.ts';
import { parseGeminiEmbeddingsResponse } from './gemini/embeddings.ts';
import { parseEmbeddingsResponse } from './openai-compatible/embeddings.ts';
import { adapterFor, adapterForConfig, providersFromEnv } from './registry.ts';

let fake: FakeProvider;
beforeAll(async () => {
  fake = await startFakeProvider();
});
afterAll(async () => {
  await closeHttp();
  await fake.close();
});

const pool = (id: string) => {
  const config = providersFromEnv({ FAKE_PROVIDER_URL: fake.url }).find((p) => p.id === id);
  if (!config) throw new Error(`no ${id}`);
  return { config, adapter: adapterForConfig(config), apiKey: config.apiKeys[0] };
};
const embed = (id: string, model: string, request: Omit<EmbeddingsRequest, 'model'>) =>
  callEmbeddings({ ...pool(id), model, request: { model, ...request } });
const rejection = (p: Promise<unknown>) =>
  p.then(
    () => {
      throw new Error('expected a rejection');
    },
    (e: GatewayError) => e,
  );

describe('the embeddings operation of each adapter, against the fake provider', () => {
  it('openai: one vector per input, in order, with the usage the provider reports', async () => {
    const r = await embed('openai', 'text-embedding-3-small', { input: ['one', 'two'], dimensions: 64 });
    expect(r.status).toBe(200);
    expect(r.embeddings.vectors).toEqual([
      fakeVector('text-embedding-3-small', 'one', 64),
      fakeVector('text-embedding-3-small', 'two', 64),
    ]);
    expect(r.embeddings.inputTokens).toBe(2);
    expect(r.embeddings.model).toBe('text-embedding-3-small');
    // Asked for as base64 upstream, parsed to the very floats.
    const call = fake.calls().at(-1);
    expect(call).toMatchObject({ path: '/openai/v1/embeddings', status: 200 });
  });

  it('gemini: embedContent for a string, batchEmbedContents for a list; no usage reported', async () => {
    fake.clearCalls();
    const one = await embed('gemini', 'gemini-embedding-001', { input: 'solo', dimensions: 8 });
    // Gemini shortens without renormalizing; the adapter answers a unit vector.
    const raw = fakeVector('gemini-embedding-001', 'solo', 8);
    const norm = Math.sqrt(raw.reduce((n, c) => n + c * c, 0));
    expect(norm).toBeLessThan(0.5);
    expect(one.embeddings.vectors).toEqual([raw.map((c) => c / norm)]);
    expect(one.embeddings.inputTokens).toBeUndefined();
    const many = await embed('gemini', 'text-embedding-004', { input: ['a', 'b', 'c'] });
    expect(many.embeddings.vectors.map((v) => v.length)).toEqual([768, 768, 768]);
    expect(fake.calls().map((c) => c.path)).toEqual([
      '/gemini/v1beta/models/gemini-embedding-001:embedContent',
      '/gemini/v1beta/models/text-embedding-004:batchEmbedContents',
    ]);
  });

  it('an OpenAI-compatible server (Ollama preset)', async () => {
    const r = await embed('llama', 'nomic-embed-text', { input: 'local' });
    expect(r.embeddings.vectors[0]).toEqual(fakeVector('nomic-embed-text', 'local', 768));
  });

  it('openai: 2,048 inputs of 3,072 dimensions (the largest list the API takes) are read whole', async () => {
    const input = Array.from({ length: 2048 }, (_, i) => `text ${i}`);
    const r = await embed('openai', 'text-embedding-3-large', { input });
    expect(r.embeddings.vectors).toHaveLength(2048);
    for (const i of [0, 1, 1024, 2047]) {
      expect(r.embeddings.vectors[i]).toEqual(fakeVector('text-embedding-3-large', `text ${i}`, 3072));
    }
    expect(r.embeddings.inputTokens).toBeGreaterThan(0);
  });

  it('anthropic has none; gemini refuses token arrays; provider errors are classified as for chat', async () => {
    expect(await rejection(embed('anthropic', 'claude-haiku-4-5', { input: 'x' }))).toMatchObject({
      code: 'invalid_request_error',
      param: 'model',
      message: expect.stringContaining('anthropic'),
    });
    expect(await rejection(embed('gemini', 'gemini-embedding-001', { input: [1, 2] }))).toMatchObject({
      code: 'invalid_request_error',
      param: 'input',
    });
    fake.script('openai', [{ fault: '429', retryAfterMs: 10 }]);
    expect(await rejection(embed('openai', 'text-embedding-3-small', { input: 'x' }))).toMatchObject({
      code: 'rate_limit_exceeded',
    });
    expect(
      await rejection(embed('openai', 'text-embedding-3-small', { input: 'x', dimensions: 99_999 })),
    ).toMatchObject({ code: 'invalid_request_error' });
  });
});

describe('parsing a malformed embeddings answer is a retryable upstream error, never a wrong vector', () => {
  it.each([
    ['no data', {}],
    ['index out of range', { data: [{ index: 3, embedding: [1] }] }],
    ['a missing input', { data: [{ index: 0, embedding: [1] }] }],
    [
      'not floats',
      {
        data: [
          { index: 0, embedding: ['a'] },
          { index: 1, embedding: [1] },
        ],
      },
    ],
  ])('openai-style: %s', (_name, body) => {
    expect(() => parseEmbeddingsResponse(body, 2)).toThrowError(
      expect.objectContaining({ code: 'upstream_error', retryable: true }),
    );
  });

  it('answers out of order are put back in input order', () => {
    const r = parseEmbeddingsResponse(
      {
        data: [
          { index: 1, embedding: [2] },
          { index: 0, embedding: [1] },
        ],
        usage: { prompt_tokens: 4 },
      },
      2,
    );
    expect(r.vectors).toEqual([[1], [2]]);
    expect(r.inputTokens).toBe(4);
  });

  it("gemini: a shortened vector (not a unit vector, as Google documents) comes back of unit length, OpenAI's way", () => {
    const r = parseGeminiEmbeddingsResponse(
      { embeddings: [{ values: [0.3, 0.4] }, { values: [0.6, 0.8] }] },
      2,
    );
    expect(r.vectors[0]![0]).toBeCloseTo(0.6, 12);
    expect(r.vectors[0]![1]).toBeCloseTo(0.8, 12);
    // Already of unit length: left exactly as it came.
    expect(r.vectors[1]).toEqual([0.6, 0.8]);
  });

  it('gemini: a count that does not match the inputs', () => {
    expect(() => parseGeminiEmbeddingsResponse({ embeddings: [{ values: [1] }] }, 2)).toThrowError(
      expect.objectContaining({ code: 'upstream_error' }),
    );
  });
});

describe('the upstream encoding and the answer cap, from the request', () => {
  const bodyOf = (u: { body?: string }) => JSON.parse(u.body ?? '{}') as Record<string, unknown>;
  const build = (
    preset: string | undefined,
    kind: 'openai' | 'openai-compatible',
    input: string[],
    dimensions?: number,
  ) => {
    const config = { id: 'p', kind, baseUrl: 'http://h/v1', apiKeys: [], ...(preset ? { preset } : {}) };
    const op = adapterFor(kind, preset).embeddings;
    if (!op) throw new Error('no embeddings');
    return op.buildRequest(
      { model: 'm', input, ...(dimensions ? { dimensions } : {}), encoding_format: 'float' },
      { model: 'm', config, apiKey: undefined },
    );
  };

  it('OpenAI and vLLM are asked for base64 whatever the caller asked; Ollama for floats', () => {
    expect(bodyOf(build(undefined, 'openai', ['a']))).toMatchObject({ encoding_format: 'base64' });
    expect(bodyOf(build('vllm', 'openai-compatible', ['a']))).toMatchObject({ encoding_format: 'base64' });
    expect(bodyOf(build('ollama', 'openai-compatible', ['a']))).toMatchObject({ encoding_format: 'float' });
  });

  it("an OpenAI-compatible host is sent `user`, as chat's (Ollama ignores it); a preset whose host rejects it drops it", () => {
    const sent = (preset: string) => {
      const op = adapterFor('openai-compatible', preset).embeddings;
      if (!op) throw new Error('no embeddings');
      const config = {
        id: 'p',
        kind: 'openai-compatible' as const,
        baseUrl: 'http://h/v1',
        apiKeys: [],
        preset,
      };
      return bodyOf(
        op.buildRequest({ model: 'm', input: 'a', user: 'u1' }, { model: 'm', config, apiKey: undefined }),
      );
    };
    expect(sent('ollama').user).toBe('u1');
    expect(sent('vllm')).not.toHaveProperty('user');
  });

  it('the cap grows with inputs × dimensions × bytes per value, floats about 6× base64', () => {
    const full = Array(2048).fill('x');
    const b64 = build(undefined, 'openai', full).maxResponseBytes ?? 0;
    // 2,048 × 3,072 float32 values in base64 are 33.6 MB; with no `dimensions` the cap assumes 4,096.
    expect(b64).toBeGreaterThan((2048 * 4096 * 4 * 4) / 3);
    expect(b64).toBeLessThan(64 * 1024 * 1024);
    const floats = build('ollama', 'openai-compatible', full, 3072).maxResponseBytes ?? 0;
    expect(floats).toBeGreaterThan(2048 * 3072 * 25);
    expect(build(undefined, 'openai', ['x'], 256).maxResponseBytes).toBeLessThan(1024 * 1024);
  });

  it('a base64 embedding is its little-endian float32 values; a host that sent floats anyway is read too', () => {
    const b64 = (v: number[]) => Buffer.from(new Float32Array(v).buffer).toString('base64');
    const r = parseEmbeddingsResponse(
      {
        data: [
          { index: 0, embedding: b64([0.5, -1.25, 3.140000104904175]) },
          { index: 1, embedding: [0.25, 2] },
        ],
      },
      2,
    );
    expect(r.vectors).toEqual([
      [0.5, -1.25, 3.140000104904175],
      [0.25, 2],
    ]);
    for (const bad of ['not base64!', 'AAA*AAAA', 'AAA=', 'AAAAAAA=']) {
      expect(() => parseEmbeddingsResponse({ data: [{ index: 0, embedding: bad }] }, 1)).toThrowError(
        expect.objectContaining({ code: 'upstream_error', retryable: true }),
      );
    }
  });
});
