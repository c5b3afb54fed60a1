import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fakeVector } from '@faregate/fake-provider/embeddings';
import { until } from '@faregate/testing/env';
import { adminCall } from './support/calls.ts';
import { type Stack, startStack } from './support/stack.ts';

let stack: Stack;
let client: OpenAI;
beforeAll(async () => {
  // (Anthropic, which has no embeddings, is refused in test/parameters.test.ts, whose stack runs it.)
  stack = await startStack({ providers: ['openai', 'gemini', 'llama'] });
  client = new OpenAI({ apiKey: stack.apiKey, baseURL: `${stack.url}/v1`, maxRetries: 0 });
}, 120_000);
afterAll(async () => {
  await stack?.stop();
});

/** What the tests read of an answer: the list, or an OpenAI error. */
interface EmbeddingsAnswer {
  data: Array<{ embedding: string | number[] }>;
  error: { type: string; message: string; param: string | null };
}

/** A float vector as float32 values (what a base64 answer decodes to). */
const f32 = (v: number[]) => Array.from(new Float32Array(v));

async function post(body: unknown, path = '/v1/embeddings') {
  const r = await fetch(`${stack.url}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${stack.apiKey}`, 'content-type': 'application/json' },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: r.status, headers: r.headers, json: (await r.json()) as EmbeddingsAnswer };
}

/** The request's settled usage rows, once billing has settled its final event. */
async function settled(requestId: string) {
  return until(
    async () => {
      const r = await stack.sql.query(
        'SELECT provider, model, input_tokens, output_tokens, cost_micros::text AS cost, final, outcome FROM usage_events WHERE request_id = $1',
        [requestId],
      );
      return r.rows.some((x) => x.final) ? r.rows : undefined;
    },
    { timeoutMs: 15_000, what: `usage of ${requestId}` },
  );
}

describe('POST /v1/embeddings with the official OpenAI SDK', () => {
  it('openai: float vectors as the provider computed them, usage, the served model', async () => {
    const { data: res, response } = await client.embeddings
      .create({ model: 'openai/text-embedding-3-small', input: 'hello world', encoding_format: 'float' })
      .withResponse();
    expect(res.object).toBe('list');
    expect(res.model).toBe('openai/text-embedding-3-small');
    expect(res.data).toHaveLength(1);
    expect(res.data[0]).toMatchObject({ object: 'embedding', index: 0 });
    expect(res.data[0]!.embedding).toEqual(fakeVector('text-embedding-3-small', 'hello world', 1536));
    expect(res.usage).toMatchObject({ prompt_tokens: 3, total_tokens: 3 });
    expect(response.headers.get('x-request-id')).toMatch(/^req_/);
  });

  it('openai: the SDK default (base64) decoded, dimensions, a list of inputs in order', async () => {
    const inputs = ['first text', 'second text', 'third'];
    const res = await client.embeddings.create({
      model: 'text-embedding-3-large',
      input: inputs,
      dimensions: 256,
    });
    expect(res.data.map((d) => d.index)).toEqual([0, 1, 2]);
    inputs.forEach((t, i) => {
      expect(res.data[i]!.embedding).toHaveLength(256);
      expect(res.data[i]!.embedding).toEqual(f32(fakeVector('text-embedding-3-large', t, 256)));
    });
    const fake = stack.fake.calls().filter((c) => c.path.endsWith('/embeddings'));
    expect(fake.at(-1)).toMatchObject({ provider: 'openai', model: 'text-embedding-3-large', status: 200 });
  });

  it('base64 is the little-endian float32 bytes, as OpenAI sends them', async () => {
    const r = await post({
      model: 'openai/text-embedding-3-small',
      input: 'bytes',
      encoding_format: 'base64',
    });
    expect(r.status).toBe(200);
    const b64 = r.json.data[0]?.embedding as string;
    expect(typeof b64).toBe('string');
    const buf = Buffer.from(b64, 'base64');
    expect(buf.length).toBe(1536 * 4);
    const expected = fakeVector('text-embedding-3-small', 'bytes', 1536);
    for (const i of [0, 1, 767, 1535]) expect(buf.readFloatLE(i * 4)).toBe(expected[i]);
  });

  it('openai: token arrays pass through', async () => {
    const res = await client.embeddings.create({
      model: 'openai/text-embedding-3-small',
      input: [
        [1, 2, 3],
        [4, 5],
      ],
      encoding_format: 'float',
    });
    expect(res.data).toHaveLength(2);
    expect(res.data[1]!.embedding).toEqual(fakeVector('text-embedding-3-small', '[4,5]', 1536));
    expect(res.usage.prompt_tokens).toBe(5);
  });

  it('gemini: embedContent for one text, batchEmbedContents for a list, outputDimensionality', async () => {
    stack.fake.clearCalls();
    const one = await client.embeddings.create({
      model: 'gemini/gemini-embedding-001',
      input: 'one text',
      encoding_format: 'float',
    });
    expect(one.model).toBe('gemini/gemini-embedding-001');
    expect(one.data[0]!.embedding).toEqual(fakeVector('gemini-embedding-001', 'one text', 3072));
    // Gemini reports no usage: the gateway counts the input (o200k) and bills that.
    expect(one.usage.prompt_tokens).toBeGreaterThan(0);
    const list = await client.embeddings.create({
      model: 'gemini/gemini-embedding-001',
      input: ['a b c', 'd e f'],
      dimensions: 768,
    });
    expect(list.data.map((d) => d.embedding.length)).toEqual([768, 768]);
    // Gemini's shortened vector is not of unit length (Google normalizes only the full 3072); the
    // gateway answers it normalized, as OpenAI's `dimensions` does.
    const raw = fakeVector('gemini-embedding-001', 'd e f', 768);
    const rawNorm = Math.sqrt(raw.reduce((n, c) => n + c * c, 0));
    expect(rawNorm).toBeLessThan(0.9);
    expect(list.data[1]!.embedding).toEqual(f32(raw.map((c) => c / rawNorm)));
    for (const d of list.data) expect(Math.hypot(...d.embedding)).toBeCloseTo(1, 5);
    const paths = stack.fake
      .calls()
      .map((c) => c.path)
      .filter((p) => !p.endsWith('/models'));
    expect(paths).toEqual([
      '/gemini/v1beta/models/gemini-embedding-001:embedContent',
      '/gemini/v1beta/models/gemini-embedding-001:batchEmbedContents',
    ]);
  });

  it('an OpenAI-compatible pool (Ollama flavour): /v1/embeddings', async () => {
    const res = await client.embeddings.create({
      model: 'llama/nomic-embed-text',
      input: ['local'],
      encoding_format: 'float',
      // Sent on, as chat's `user` is (README); Ollama ignores it.
      user: 'u1',
    });
    // Ollama serves an untagged name as `:latest`: the answer names what served it.
    expect(res.model).toBe('llama/nomic-embed-text:latest');
    expect(res.data[0]!.embedding).toEqual(fakeVector('nomic-embed-text', 'local', 768));
    expect(res.usage.prompt_tokens).toBe(2);
  });

  it('is billed once, at the listed embedding price, and the answer says what it cost', async () => {
    // 40,000 characters: 10,000 tokens as the fake counts, at $0.13 / M = 1,300 µUSD.
    const { data: res, response } = await client.embeddings
      .create({ model: 'openai/text-embedding-3-large', input: 'x'.repeat(40_000), encoding_format: 'float' })
      .withResponse();
    expect(res.usage.prompt_tokens).toBe(10_000);
    expect((res.usage as { cost?: number }).cost).toBeCloseTo(0.0013, 10);
    const id = response.headers.get('x-request-id') ?? '';
    const rows = await settled(id);
    expect(rows).toEqual([
      {
        provider: 'openai',
        model: 'text-embedding-3-large',
        input_tokens: 10_000,
        output_tokens: 0,
        cost: '1300',
        final: true,
        outcome: 'success',
      },
    ]);
    // Gemini (no usage from the provider): billed on the gateway's count, once.
    const g = await client.embeddings
      .create({ model: 'gemini/gemini-embedding-001', input: 'count me please', encoding_format: 'float' })
      .withResponse();
    const grows = await settled(g.response.headers.get('x-request-id') ?? '');
    expect(grows).toHaveLength(1);
    expect(grows[0]).toMatchObject({
      provider: 'gemini',
      input_tokens: g.data.usage.prompt_tokens,
      final: true,
    });
    // The admission holds of both requests are released.
    await until(
      async () => {
        const h = await stack.sql.query('SELECT count(*)::int AS n FROM holds');
        return h.rows[0].n === 0 || undefined;
      },
      { timeoutMs: 15_000, what: 'holds released' },
    );
  });

  // 2,048 × 3,072 floats: 34 MB as base64 (a float answer this size once passed the worker's
  // response cap: a 502). The provider is asked for base64 either way. Floats are checked at 512
  // dimensions: at 3,072 they are ~130 MB of JSON, 30–40 s of the suite's two cores.
  it.each([
    ['float', 512],
    ['base64', 3072],
  ] as const)(
    'the largest list the API takes (2,048 inputs, text-embedding-3-large): every vector, %s, billed',
    async (encoding, dims) => {
      const input = Array.from({ length: 2048 }, (_, i) => `text number ${i}`);
      const { data: res, response } = await client.embeddings
        .create({
          model: 'text-embedding-3-large',
          input,
          encoding_format: encoding,
          ...(dims === 3072 ? {} : { dimensions: dims }),
        })
        .withResponse();
      expect(res.data).toHaveLength(2048);
      for (const i of [0, 1, 1000, 2047]) {
        const d = res.data[i];
        expect(d?.index).toBe(i);
        const v = fakeVector('text-embedding-3-large', input[i] ?? '', dims);
        if (encoding === 'float') expect(d?.embedding).toEqual(v);
        else
          expect(
            Array.from(
              new Float32Array(
                new Uint8Array(Buffer.from(d?.embedding as unknown as string, 'base64')).buffer,
              ),
            ),
          ).toEqual(v);
      }
      expect(res.usage.prompt_tokens).toBeGreaterThan(2048);
      const rows = await settled(response.headers.get('x-request-id') ?? '');
      expect(rows).toEqual([
        expect.objectContaining({
          provider: 'openai',
          model: 'text-embedding-3-large',
          input_tokens: res.usage.prompt_tokens,
          final: true,
          outcome: 'success',
        }),
      ]);
      expect(BigInt(rows[0]?.cost)).toBeGreaterThan(0n);
    },
    120_000,
  );

  it('/v1/models lists the embedding models', async () => {
    const ids: string[] = [];
    for await (const m of client.models.list()) ids.push(m.id);
    expect(ids).toEqual(
      expect.arrayContaining([
        'openai/text-embedding-3-small',
        'openai/text-embedding-3-large',
        'gemini/gemini-embedding-001',
        'llama/nomic-embed-text',
      ]),
    );
  });
});

describe('hostile and impossible embeddings requests: a 400/404 in OpenAI shape, nothing queued', () => {
  const cases: Array<[string, unknown, number, string | null]> = [
    ['empty string', { model: 'text-embedding-3-small', input: '' }, 400, 'input'],
    ['empty list', { model: 'text-embedding-3-small', input: [] }, 400, 'input'],
    ['a list with an empty string', { model: 'text-embedding-3-small', input: ['a', ''] }, 400, 'input'],
    ['too many inputs', { model: 'text-embedding-3-small', input: Array(2049).fill('a') }, 400, 'input'],
    ['input a number', { model: 'text-embedding-3-small', input: 5 }, 400, 'input'],
    ['input an object', { model: 'text-embedding-3-small', input: { __proto__: 'x' } }, 400, 'input'],
    ['mixed list', { model: 'text-embedding-3-small', input: ['a', 1] }, 400, 'input'],
    ['negative token', { model: 'text-embedding-3-small', input: [-1] }, 400, 'input'],
    ['no input', { model: 'text-embedding-3-small' }, 400, 'input'],
    ['no model', { input: 'a' }, 400, 'model'],
    [
      'dimensions a string',
      { model: 'text-embedding-3-small', input: 'a', dimensions: '8' },
      400,
      'dimensions',
    ],
    ['dimensions zero', { model: 'text-embedding-3-small', input: 'a', dimensions: 0 }, 400, 'dimensions'],
    [
      'dimensions past the model',
      { model: 'text-embedding-3-small', input: 'a', dimensions: 1537 },
      400,
      'dimensions',
    ],
    [
      'dimensions past gemini',
      { model: 'gemini/gemini-embedding-001', input: 'a', dimensions: 3073 },
      400,
      'dimensions',
    ],
    [
      'encoding hex',
      { model: 'text-embedding-3-small', input: 'a', encoding_format: 'hex' },
      400,
      'encoding_format',
    ],
    ['unknown field', { model: 'text-embedding-3-small', input: 'a', constructor: 1 }, 400, null],
    ['a chat model', { model: 'openai/gpt-4o-mini', input: 'a' }, 400, 'model'],
    ['unknown model', { model: 'openai/text-embedding-9', input: 'a' }, 404, 'model'],
    ['prototype-named model', { model: '__proto__', input: 'a' }, 404, 'model'],
    ['token arrays to gemini', { model: 'gemini/gemini-embedding-001', input: [1, 2] }, 400, 'input'],
    [
      '101 inputs to gemini',
      { model: 'gemini/gemini-embedding-001', input: Array(101).fill('a') },
      400,
      'input',
    ],
    ['user to gemini', { model: 'gemini/gemini-embedding-001', input: 'a', user: 'u1' }, 400, 'user'],
  ];
  it.each(cases)('%s', async (_name, body, status, param) => {
    stack.fake.clearCalls();
    const r = await post(body);
    expect(r.status).toBe(status);
    expect(r.json.error).toMatchObject({ type: expect.any(String), message: expect.any(String) });
    // The param names the field (`input`), or the bad item of a list (`input.1`).
    if (param) expect(r.json.error.param).toMatch(new RegExp(`^${param}(\\.\\d+)?$`));
    expect(stack.fake.calls().filter((c) => !/\/models$/.test(c.path))).toEqual([]);
  });

  it('null is a field not given (what callers that map unset arguments to None send), as on chat', async () => {
    const nulls = { dimensions: null, encoding_format: null, user: null };
    const r = await post({ model: 'text-embedding-3-small', input: 'a', ...nulls });
    expect(r.status).toBe(200);
    // Floats (the default encoding), of the model's whole size (no dimensions).
    expect(Array.isArray(r.json.data[0]?.embedding)).toBe(true);
    expect(r.json.data[0]?.embedding).toHaveLength(1536);
    // `user` null is no user: not the 400 a user is to Gemini.
    expect((await post({ model: 'gemini/gemini-embedding-001', input: 'a', ...nulls })).status).toBe(200);
  });

  it("dimensions past the model's vector size are refused before any call, naming the size", async () => {
    const r = await post({ model: 'text-embedding-3-small', input: 'a', dimensions: 1537 });
    expect(r.json.error.message).toBe(
      "'dimensions' can be at most 1536 for openai/text-embedding-3-small (got 1537).",
    );
    // At the size itself, served.
    expect((await post({ model: 'text-embedding-3-small', input: 'a', dimensions: 1536 })).status).toBe(200);
  });

  it('a list past 2,048 inputs says so (not "Invalid input")', async () => {
    const r = await post({ model: 'text-embedding-3-small', input: Array(2049).fill('a') });
    expect(r.json.error.message).toBe(
      "Invalid value for 'input': input may hold at most 2048 items; it has 2049",
    );
  });

  it('a balance that does not cover the inputs is a 402 whose advice fits embeddings (no max_tokens)', async () => {
    const acc = await adminCall(stack, 'POST', '/admin/v1/accounts', { name: 'tiny' });
    await adminCall(stack, 'POST', '/admin/v1/credits', { account_id: acc.id, amount_usd: '0.000001' });
    const k = await adminCall(stack, 'POST', '/admin/v1/keys', { account_id: acc.id, name: 'k' });
    const poor = new OpenAI({ apiKey: String(k.key), baseURL: `${stack.url}/v1`, maxRetries: 0 });
    const err = await poor.embeddings
      .create({
        model: 'openai/text-embedding-3-large',
        input: Array.from({ length: 50 }, () => 'word '.repeat(200)),
      })
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ status: 402, code: 'insufficient_quota' });
    expect((err as Error).message).toMatch(/fewer or shorter inputs/);
    expect((err as Error).message).not.toMatch(/max_tokens/);
  });

  it('an embedding model on chat completions is refused', async () => {
    const c = await post(
      { model: 'openai/text-embedding-3-small', messages: [{ role: 'user', content: 'hi' }] },
      '/v1/chat/completions',
    );
    expect(c.status).toBe(400);
    expect(c.json.error).toMatchObject({
      param: 'model',
      message: expect.stringContaining('/v1/embeddings'),
    });
  });

  it('not JSON, and a body too deep for nothing: 400', async () => {
    expect((await post('{"model":')).status).toBe(400);
    expect((await post('[]')).status).toBe(400);
  });
});
