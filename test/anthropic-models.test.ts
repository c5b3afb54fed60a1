import Anthropic from '@anthropic-ai/sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminCall } from './support/calls.ts';
import { type Stack, startStack } from './support/stack.ts';

/**
 * `GET /v1/models` for Anthropic's SDK (`models.list`, `models.retrieve`), unchanged, against the real
 * services: with `anthropic-version` the answer is Anthropic's Models API shape, paged by cursor over
 * the list OpenAI's shape gives less its embedding models (which `/v1/messages` cannot use, and this
 * shape cannot mark), and its errors are Anthropic's; without it nothing changed.
 */
let stack: Stack;
let client: Anthropic;
beforeAll(async () => {
  stack = await startStack({ providers: ['openai', 'anthropic', 'gemini'] });
  client = new Anthropic({ apiKey: stack.apiKey, baseURL: stack.url, maxRetries: 0 });
}, 120_000);
afterAll(async () => {
  await stack?.stop();
});

interface OpenAIModel {
  id: string;
  created: number;
  context_window: number;
  max_output_tokens: number;
  capabilities: string[];
}

/** The list in OpenAI's shape (no `anthropic-version`), as the OpenAI SDK gets it. */
async function openaiList(key = stack.apiKey, query = ''): Promise<OpenAIModel[]> {
  const r = await fetch(`${stack.url}/v1/models${query}`, { headers: { authorization: `Bearer ${key}` } });
  expect(r.status).toBe(200);
  const body = (await r.json()) as { object: string; data: OpenAIModel[] };
  expect(body.object).toBe('list');
  return body.data;
}

/** OpenAI's list less its embedding models: what Anthropic's shape lists. */
const messagesList = async (key = stack.apiKey) =>
  (await openaiList(key)).filter((m) => !m.capabilities.includes('embeddings'));

/** Every model `models.list` auto-pagination yields. */
async function collect(c: Anthropic, params: Anthropic.ModelListParams): Promise<Anthropic.ModelInfo[]> {
  const out: Anthropic.ModelInfo[] = [];
  for await (const m of c.models.list(params)) out.push(m);
  return out;
}

const get = (path: string, headers: Record<string, string> = {}) =>
  fetch(`${stack.url}${path}`, {
    headers: { 'x-api-key': stack.apiKey, 'anthropic-version': '2023-06-01', ...headers },
  });

describe('models.list', () => {
  it("pages over OpenAI's list less its embedding models, in order, each model in Anthropic's shape", async () => {
    const expected = await messagesList();
    const ids = expected.map((m) => m.id);
    expect((await openaiList()).map((m) => m.id)).toContain('openai/text-embedding-3-small');
    expect(ids).not.toContain('openai/text-embedding-3-small');
    expect(ids.length).toBeGreaterThan(4);
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids).toContain('auto');

    const first = await client.models.list({ limit: 2 });
    expect(first.data.map((m) => m.id)).toEqual(ids.slice(0, 2));
    expect(first.has_more).toBe(true);
    expect(first.first_id).toBe(ids[0]);
    expect(first.last_id).toBe(ids[1]);

    const all = await collect(client, { limit: 2 });
    expect(all.map((m) => m.id)).toEqual(ids);
    for (const [i, m] of all.entries()) {
      const o = expected[i] as OpenAIModel;
      expect(m).toEqual({
        type: 'model',
        id: o.id,
        display_name: o.id,
        created_at: new Date(o.created * 1000).toISOString().replace('.000Z', 'Z'),
        max_input_tokens: o.context_window,
        max_tokens: o.max_output_tokens,
      });
      expect(m.created_at).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/);
    }

    // The default page is 20; one page of 1000 is the whole list.
    expect((await client.models.list()).data).toHaveLength(Math.min(20, ids.length));
    const whole = await client.models.list({ limit: 1000 });
    expect(whole.data.map((m) => m.id)).toEqual(ids);
    expect(whole.has_more).toBe(false);
  });

  it('pages backward from before_id, as the SDK follows first_id', async () => {
    const ids = (await messagesList()).map((m) => m.id);
    const last = ids.at(-1) as string;
    const back = await client.models.list({ limit: 3, before_id: last });
    expect(back.data.map((m) => m.id)).toEqual(ids.slice(-4, -1));
    // The SDK follows each page's first_id back to the start; within a page the list's order holds.
    const pages: string[][] = [];
    for await (const page of back.iterPages()) pages.push(page.data.map((m) => m.id));
    expect(pages.reverse().flat()).toEqual(ids.slice(0, -1));
  });

  it("lists for a key limited by allowed_models exactly what OpenAI's shape lists it", async () => {
    const acc = await adminCall(stack, 'POST', '/admin/v1/accounts', { name: 'anthropic lister' });
    const k = await adminCall(stack, 'POST', '/admin/v1/keys', {
      account_id: acc.id,
      name: 'mini only',
      allowed_models: ['openai/gpt-4o-mini'],
    });
    const key = k.key as string;
    const expected = (await messagesList(key)).map((m) => m.id);
    expect(expected).toContain('openai/gpt-4o-mini');
    expect(expected).not.toContain('auto');
    const limited = new Anthropic({ apiKey: key, baseURL: stack.url, maxRetries: 0 });
    expect((await collect(limited, { limit: 1 })).map((m) => m.id)).toEqual(expected);
    const hidden = await limited.models.retrieve('anthropic/claude-haiku-4-5').catch((e: unknown) => e);
    expect(hidden).toBeInstanceOf(Anthropic.NotFoundError);
  });

  it.each([
    ['limit=0', 'limit'],
    ['limit=1001', 'limit'],
    ['limit=abc', 'limit'],
    ['limit=1&limit=2', 'limit'],
    ['after_id=openai%2Fno-such-model', 'after_id'],
    ['before_id=nope', 'before_id'],
    ['after_id=auto&before_id=auto', 'after_id'],
  ])('refuses ?%s with a 400 in Anthropic’s shape naming %s', async (query, param) => {
    const r = await get(`/v1/models?${query}`);
    expect(r.status).toBe(400);
    const body = (await r.json()) as { type: string; error: { type: string; message: string } };
    expect(body).toMatchObject({ type: 'error', error: { type: 'invalid_request_error' } });
    expect(body.error.message).toContain(param);
    expect(r.headers.get('request-id')).toMatch(/^req_/);
  });

  it('raises BadRequestError in the SDK for an unknown cursor', async () => {
    const e = await client.models.list({ after_id: 'no-such-model' }).catch((err: unknown) => err);
    expect(e).toBeInstanceOf(Anthropic.BadRequestError);
  });
});

describe('models.retrieve', () => {
  it("answers one model in Anthropic's shape, by its id, a bare name, or auto", async () => {
    const expected = await openaiList();
    const haiku = expected.find((m) => m.id === 'anthropic/claude-haiku-4-5') as OpenAIModel;
    const m = await client.models.retrieve('anthropic/claude-haiku-4-5');
    expect(m).toEqual({
      type: 'model',
      id: 'anthropic/claude-haiku-4-5',
      display_name: 'anthropic/claude-haiku-4-5',
      created_at: new Date(haiku.created * 1000).toISOString().replace('.000Z', 'Z'),
      max_input_tokens: haiku.context_window,
      max_tokens: haiku.max_output_tokens,
    });
    expect((await client.models.retrieve('gpt-4o-mini')).id).toBe('openai/gpt-4o-mini');
    const auto = await client.models.retrieve('auto');
    expect(auto).toMatchObject({ type: 'model', id: 'auto', display_name: 'auto' });
  });

  it('raises NotFoundError for an unknown model, with its request id', async () => {
    const e = await client.models.retrieve('openai/no-such-model').catch((err: unknown) => err);
    expect(e).toBeInstanceOf(Anthropic.NotFoundError);
    const err = e as InstanceType<typeof Anthropic.NotFoundError>;
    expect(err.error).toMatchObject({ type: 'error', error: { type: 'not_found_error' } });
    expect(err.requestID).toMatch(/^req_/);
  });

  it('raises NotFoundError for an embedding model, which OpenAI’s shape still answers', async () => {
    for (const id of ['openai/text-embedding-3-small', 'text-embedding-3-small']) {
      const e = await client.models.retrieve(id).catch((err: unknown) => err);
      expect(e).toBeInstanceOf(Anthropic.NotFoundError);
      expect((e as InstanceType<typeof Anthropic.NotFoundError>).error).toMatchObject({
        type: 'error',
        error: { type: 'not_found_error' },
      });
    }
    const r = await fetch(`${stack.url}/v1/models/openai/text-embedding-3-small`, {
      headers: { authorization: `Bearer ${stack.apiKey}` },
    });
    expect(r.status).toBe(200);
  });
});

describe('errors and the OpenAI shape', () => {
  it("a wrong key is Anthropic's 401 with anthropic-version, OpenAI's without", async () => {
    const bad = new Anthropic({ apiKey: 'fg_wrong_key_0123456789', baseURL: stack.url, maxRetries: 0 });
    expect(await bad.models.list().catch((e: unknown) => e)).toBeInstanceOf(Anthropic.AuthenticationError);
    const r = await get('/v1/models/auto', { 'x-api-key': 'fg_wrong_key_0123456789' });
    expect(r.status).toBe(401);
    expect(await r.json()).toMatchObject({ type: 'error', error: { type: 'authentication_error' } });
    const none = await fetch(`${stack.url}/v1/models`, { headers: { 'anthropic-version': '2023-06-01' } });
    expect(none.status).toBe(401);
    const noKey = (await none.json()) as { type: string; error: { type: string; message: string } };
    expect(noKey).toMatchObject({ type: 'error', error: { type: 'authentication_error' } });
    // Said in the terms of Anthropic's clients, which send x-api-key.
    expect(noKey.error.message).toContain("'x-api-key'");
    const openai = await fetch(`${stack.url}/v1/models`, {
      headers: { 'x-api-key': 'fg_wrong_key_0123456789' },
    });
    expect(openai.status).toBe(401);
    expect(await openai.json()).toMatchObject({ error: { code: 'invalid_api_key' } });
  });

  it('without anthropic-version the list is OpenAI’s, whole, whatever the paging parameters', async () => {
    const whole = await openaiList();
    const paged = await openaiList(stack.apiKey, '?limit=2&after_id=nope');
    expect(paged.map((m) => m.id)).toEqual(whole.map((m) => m.id));
    const r = await fetch(`${stack.url}/v1/models/openai/no-such-model`, {
      headers: { authorization: `Bearer ${stack.apiKey}` },
    });
    expect(r.status).toBe(404);
    expect(await r.json()).toMatchObject({ error: { code: 'model_not_found' } });
    expect(r.headers.get('request-id')).toBeNull();
  });
});
