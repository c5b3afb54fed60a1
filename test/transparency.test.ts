import Anthropic from '@anthropic-ai/sdk';
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { until } from '@faregate/testing/env';
import { adminCall } from './support/calls.ts';
import { jobApi } from './support/jobs.ts';
import { type Stack, startStack } from './support/stack.ts';

/**
 * What an answer tells its caller: the model that served it (`provider/model`, whatever name was
 * asked for), the provider calls made on the way (headers, `error.attempts`), and what it cost
 * (`usage.cost`, equal to what the ledger settles). And `/v1/models` lists only what can be called.
 */

let stack: Stack;
let client: OpenAI;

beforeAll(async () => {
  const configPath = join(tmpdir(), `fg-transparency-${process.pid}-${Date.now()}.json`);
  writeFileSync(
    configPath,
    JSON.stringify({
      fallbacks: { 'gemini/gemini-2.5-flash': ['openai/gpt-4o-mini'] },
      aliases: { fast: 'openai/gpt-4o-mini' },
    }),
  );
  stack = await startStack({
    providers: ['openai', 'anthropic', 'gemini', 'llama'],
    env: { FAREGATE_CONFIG: configPath, WORKER_ATTEMPTS: '1' },
  });
  client = new OpenAI({ apiKey: stack.apiKey, baseURL: `${stack.url}/v1`, maxRetries: 0 });
}, 120_000);

afterAll(async () => {
  await stack?.stop();
});

const ask = (content: string) => [{ role: 'user' as const, content }];

/** What the ledger settled for a request (µUSD), once its final usage event is in. */
async function settled(requestId: string): Promise<{ micros: number; calls: number }> {
  let out = { micros: 0, calls: 0 };
  await until(
    async () => {
      const r = await stack.sql.query<{ cost: string; finals: number; calls: number }>(
        `SELECT coalesce(sum(cost_micros), 0)::text AS cost, count(*) FILTER (WHERE final)::int AS finals,
                count(*) FILTER (WHERE input_tokens + output_tokens > 0)::int AS calls
           FROM usage_events WHERE request_id = $1`,
        [requestId],
      );
      const row = r.rows[0];
      if (row?.finals !== 1) return false;
      out = { micros: Number(row.cost), calls: row.calls };
      return true;
    },
    { what: `settlement of ${requestId}` },
  );
  return out;
}

/** Reads a stream to its end: the models its chunks named, and its usage chunk. */
async function drain(stream: AsyncIterable<OpenAI.ChatCompletionChunk>) {
  const models = new Set<string>();
  let usage: OpenAI.CompletionUsage | null | undefined;
  for await (const c of stream) {
    models.add(c.model);
    if (c.usage) usage = c.usage;
  }
  return { models, usage };
}

const micros = (usd: number | undefined) => Math.round((usd ?? Number.NaN) * 1_000_000);
const costOf = (u: OpenAI.CompletionUsage | null | undefined) =>
  (u as { cost?: number } | null | undefined)?.cost;

describe('an answer names what served it and what it cost', () => {
  it('direct, non-streamed: provider/model, the route headers, and usage.cost equal to the ledger', async () => {
    const { data, response } = await client.chat.completions
      .create({ model: 'gpt-4o-mini', messages: ask('hello there'), max_tokens: 30 })
      .withResponse();
    expect(data.model).toBe('openai/gpt-4o-mini');
    expect(response.headers.get('x-faregate-provider')).toBe('openai');
    expect(response.headers.get('x-faregate-model')).toBe('openai/gpt-4o-mini');
    expect(response.headers.get('x-faregate-attempts')).toBe('openai:ok');
    const cost = costOf(data.usage);
    expect(cost).toBeGreaterThan(0);
    const ledger = await settled(response.headers.get('x-request-id')!);
    expect(micros(cost)).toBe(ledger.micros);
  });

  it('direct, streamed: every chunk names the model, the usage chunk carries the settled cost', async () => {
    const { data: stream, response } = await client.chat.completions
      .create({
        model: 'anthropic/claude-haiku-4-5',
        messages: ask('stream to me'),
        max_tokens: 30,
        stream: true,
        stream_options: { include_usage: true },
      })
      .withResponse();
    const { models, usage } = await drain(stream);
    expect([...models]).toEqual(['anthropic/claude-haiku-4-5-20251001']);
    expect(response.headers.get('x-faregate-provider')).toBe('anthropic');
    expect(response.headers.get('x-faregate-model')).toBe('anthropic/claude-haiku-4-5-20251001');
    expect(response.headers.get('x-faregate-attempts')).toBe('anthropic:ok');
    const ledger = await settled(response.headers.get('x-request-id')!);
    expect(micros(costOf(usage))).toBe(ledger.micros);
    expect(ledger.micros).toBeGreaterThan(0);
  });

  it('a fallback names the model that answered and the chain tried, streamed or not', async () => {
    stack.fake.script('gemini', [{ fault: '503' }]);
    const { data, response } = await client.chat.completions
      .create({ model: 'gemini/gemini-2.5-flash', messages: ask('fall back please') })
      .withResponse();
    expect(data.model).toBe('openai/gpt-4o-mini');
    expect(response.headers.get('x-faregate-provider')).toBe('openai');
    expect(response.headers.get('x-faregate-attempts')).toBe('gemini:503,openai:ok');
    const ledger = await settled(response.headers.get('x-request-id')!);
    expect(micros(costOf(data.usage))).toBe(ledger.micros);

    stack.fake.script('gemini', [{ fault: '503' }]);
    const { data: stream, response: sr } = await client.chat.completions
      .create({
        model: 'gemini/gemini-2.5-flash',
        messages: ask('fall back, streaming'),
        stream: true,
        stream_options: { include_usage: true },
      })
      .withResponse();
    const { models, usage } = await drain(stream);
    expect([...models]).toEqual(['openai/gpt-4o-mini']);
    expect(sr.headers.get('x-faregate-attempts')).toBe('gemini:503,openai:ok');
    expect(micros(costOf(usage))).toBe((await settled(sr.headers.get('x-request-id')!)).micros);
  });

  it('auto and aliases name the model they chose', async () => {
    stack.fake.clearCalls();
    const auto = await client.chat.completions.create({ model: 'auto', messages: ask('pick one') });
    const served = stack.fake.calls().filter((c) => c.model !== null);
    expect(served).toHaveLength(1);
    expect(auto.model).not.toBe('auto');
    expect(auto.model).toBe(`${served[0]!.provider}/${served[0]!.model}`);

    const fast = await client.chat.completions.create({ model: 'fast', messages: ask('quick') });
    expect(fast.model).toBe('openai/gpt-4o-mini');
  });

  it('counts every call that produced tokens: a job cut mid-stream, then answered, reports both', async () => {
    stack.fake.script('gemini', [{ fault: 'cut_after_burst' }]);
    const jobs = jobApi(stack.url);
    const id = await jobs.submit(stack.apiKey, 'a long answer, please', 'gemini/gemini-2.5-flash');
    const job = await jobs.finished(stack.apiKey, id);
    expect(job.status).toBe('completed');
    const result = job.result as unknown as OpenAI.ChatCompletion;
    const ledger = await settled(id);
    expect(ledger.calls).toBe(2);
    expect(micros(costOf(result.usage))).toBe(ledger.micros);
    expect(result.model).toBe('openai/gpt-4o-mini');
    const attempts = job.attempts as Array<{ provider: string; code: string }>;
    expect(attempts).toHaveLength(2);
    expect(attempts[0]).toMatchObject({ provider: 'gemini' });
    expect(attempts[0]!.code).not.toBe('ok');
    expect(attempts[1]!.code).toBe('ok');
  });

  it('a failure after provider calls names each attempt: provider, model, status', async () => {
    stack.fake.script('openai', [{ fault: '500' }]);
    const err = await client.chat.completions
      .create({ model: 'openai/gpt-4o-mini', messages: ask('fail please') })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.APIError);
    const e = err as InstanceType<typeof OpenAI.APIError>;
    expect(e.status).toBe(502);
    expect(e.message).toContain('openai/gpt-4o-mini');
    expect(e.message).toContain('500');
    expect((e.error as { attempts?: unknown }).attempts).toEqual([
      { provider: 'openai', model: 'gpt-4o-mini', status: 500, code: 'upstream_error' },
    ]);
    expect(e.headers?.get('x-faregate-attempts')).toBe('openai:500');
    expect(e.headers?.get('x-faregate-model')).toBe('openai/gpt-4o-mini');

    // Both candidates failing: both named, in order.
    stack.fake.script('gemini', [{ fault: '503' }]);
    stack.fake.script('openai', [{ fault: '500' }]);
    const both = (await client.chat.completions
      .create({ model: 'gemini/gemini-2.5-flash', messages: ask('all down') })
      .catch((x: unknown) => x)) as InstanceType<typeof OpenAI.APIError>;
    expect(both.status).toBeGreaterThanOrEqual(500);
    expect(both.message).toContain('gemini/gemini-2.5-flash');
    expect(both.message).toContain('openai/gpt-4o-mini');
    expect(both.headers?.get('x-faregate-attempts')).toBe('gemini:503,openai:500');
  });
});

interface Listed {
  id: string;
  capabilities?: string[];
  owned_by: string;
  routable: boolean;
  resolves_to?: string;
  reason?: string;
  pricing: { input: string; output: string; cached_input: string | null } | null;
}

async function listModels(all = false): Promise<Listed[]> {
  const r = await fetch(`${stack.url}/v1/models${all ? '?all=true' : ''}`, {
    headers: { authorization: `Bearer ${stack.apiKey}` },
  });
  expect(r.status).toBe(200);
  return ((await r.json()) as { data: Listed[] }).data;
}

/** USD per million tokens as µUSD per million, exactly (prices have at most 6 decimals). */
function perMillionMicros(usd: string): bigint {
  const [whole = '0', frac = ''] = usd.split('.');
  return BigInt(whole) * 1_000_000n + BigInt((frac + '000000').slice(0, 6));
}

describe('a door’s reasoning parameter and a fallback that cannot reason', () => {
  it('thinking and reasoning.effort reach the reasoning model asked for; the fallback is left out, not blamed', async () => {
    // gemini-2.5-flash reasons; its fallback (gpt-4o-mini, the routing file) does not.
    const anthropic = new Anthropic({ apiKey: stack.apiKey, baseURL: stack.url, maxRetries: 0 });
    const { data: m, response } = await anthropic.messages
      .create({
        model: 'gemini/gemini-2.5-flash',
        max_tokens: 3000,
        thinking: { type: 'enabled', budget_tokens: 2000 },
        messages: ask('Ponder.'),
      })
      .withResponse();
    expect(m.model).toBe('gemini/gemini-2.5-flash');
    // Only the model asked for is on the route: nothing to fall back to that would drop the thinking.
    expect(response.headers.get('x-faregate-attempts')).toBe('gemini:ok');
    const r = await client.responses.create({
      model: 'gemini/gemini-2.5-flash',
      input: 'Ponder.',
      reasoning: { effort: 'low' },
    });
    expect(r.status).toBe('completed');
    // A model that does not reason, asked for by name: a 400 naming the door's parameter.
    const e = await client.responses
      .create({ model: 'openai/gpt-4o-mini', input: 'Ponder.', reasoning: { effort: 'low' } })
      .catch((err: unknown) => err);
    expect(e).toMatchObject({ status: 400, param: 'reasoning.effort' });
  });
});

describe('a key limited to some models', () => {
  it('sees auto only when its list names it, and then as routing reaches it (every routable model)', async () => {
    const acc = await adminCall(stack, 'POST', '/admin/v1/accounts', { name: 'auto only' });
    const keyFor = async (allowed: string[]) =>
      (
        await adminCall(stack, 'POST', '/admin/v1/keys', {
          account_id: acc.id,
          name: 'k',
          allowed_models: allowed,
        })
      ).key as string;
    const autoOf = async (key: string) =>
      fetch(`${stack.url}/v1/models/auto`, { headers: { authorization: `Bearer ${key}` } });
    const everyone = (await (await autoOf(stack.apiKey)).json()) as Record<string, unknown>;
    const listed = (await (await autoOf(await keyFor(['auto']))).json()) as Record<string, unknown>;
    expect(listed).toEqual(everyone);
    expect(listed.routable).toBe(true);
    expect((await autoOf(await keyFor(['openai/gpt-4o-mini']))).status).toBe(404);
    // Calling it follows the listing: refused (403) to a list without `auto`, even when auto would
    // choose a model on it, on every door; a list naming either spelling may call it.
    await adminCall(stack, 'POST', '/admin/v1/credits', { account_id: acc.id, amount_usd: '5' });
    // The list names the very model auto chooses.
    const chosen = await new OpenAI({
      apiKey: stack.apiKey,
      baseURL: `${stack.url}/v1`,
      maxRetries: 0,
    }).chat.completions.create({
      model: 'auto',
      messages: ask('hi'),
    });
    const mini = await keyFor([chosen.model]);
    const doors = async (key: string, model: string) => [
      await fetch(`${stack.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model, messages: ask('hi') }),
      }),
      await fetch(`${stack.url}/v1/messages`, {
        method: 'POST',
        headers: { 'x-api-key': key, 'anthropic-version': '2023-06-01', 'content-type': 'application/json' },
        body: JSON.stringify({ model, max_tokens: 16, messages: ask('hi') }),
      }),
      await fetch(`${stack.url}/v1/responses`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model, input: 'hi' }),
      }),
    ];
    for (const model of ['auto', 'faregate/auto', ' auto ']) {
      const refused = await doors(mini, model);
      expect(refused.map((r) => r.status)).toEqual([403, 403, 403]);
      const [chat, messages] = (await Promise.all(refused.map((r) => r.json()))) as Record<string, unknown>[];
      expect(chat).toMatchObject({ error: { code: 'permission_denied', param: 'model' } });
      expect(messages).toMatchObject({ type: 'error', error: { type: 'permission_error' } });
    }
    for (const allowed of [['auto'], ['faregate/auto']]) {
      const served = await doors(await keyFor(allowed), 'auto');
      expect(served.map((r) => r.status)).toEqual([200, 200, 200]);
    }
  });

  it('is refused a model outside its list, never answered by a fallback it may use', async () => {
    const acc = await adminCall(stack, 'POST', '/admin/v1/accounts', { name: 'limited' });
    await adminCall(stack, 'POST', '/admin/v1/credits', { account_id: acc.id, amount_usd: '5' });
    const k = await adminCall(stack, 'POST', '/admin/v1/keys', {
      account_id: acc.id,
      name: 'mini only',
      allowed_models: ['openai/gpt-4o-mini'],
    });
    const limited = new OpenAI({ apiKey: k.key as string, baseURL: `${stack.url}/v1`, maxRetries: 0 });
    // gemini-2.5-flash falls back to gpt-4o-mini (the routing file): still not this key's model.
    const e = await limited.chat.completions
      .create({ model: 'gemini/gemini-2.5-flash', messages: ask('hi') })
      .catch((err: unknown) => err);
    expect(e).toBeInstanceOf(OpenAI.PermissionDeniedError);
    expect((e as InstanceType<typeof OpenAI.APIError>).param).toBe('model');
    const ok = await limited.chat.completions.create({ model: 'openai/gpt-4o-mini', messages: ask('hi') });
    expect(ok.model).toBe('openai/gpt-4o-mini');
    // An alias of an allowed model is the model.
    expect((await limited.chat.completions.create({ model: 'fast', messages: ask('hi') })).model).toBe(
      'openai/gpt-4o-mini',
    );

    // It lists only what it may call: the model, its other names, the alias that resolves to it.
    const listed = (await limited.models.list()).data.map((m) => m.id);
    expect(listed).toContain('openai/gpt-4o-mini');
    expect(listed).toContain('fast');
    expect(listed.length).toBeGreaterThan(0);
    const otherNames = (await listModels()).filter((m) => m.resolves_to === 'openai/gpt-4o-mini');
    for (const m of otherNames) expect(listed).toContain(m.id);
    expect(listed.filter((id) => id.startsWith('gemini/') || id.startsWith('anthropic/'))).toEqual([]);
    const hidden = await limited.models.retrieve('gemini/gemini-2.5-flash').catch((err: unknown) => err);
    expect(hidden).toBeInstanceOf(OpenAI.NotFoundError);
    expect((await limited.models.retrieve('fast')).id).toBe('fast');

    // count_tokens answers only for models it may call, in Anthropic's shape.
    const anthropic = new Anthropic({ apiKey: k.key as string, baseURL: stack.url, maxRetries: 0 });
    const counted = await anthropic.messages.countTokens({ model: 'gpt-4o-mini', messages: ask('hi') });
    expect(counted.input_tokens).toBeGreaterThan(0);
    const denied = await anthropic.messages
      .countTokens({ model: 'anthropic/claude-haiku-4-5', messages: ask('hi') })
      .catch((err: unknown) => err);
    expect(denied).toBeInstanceOf(Anthropic.PermissionDeniedError);
    expect((denied as InstanceType<typeof Anthropic.APIError>).error).toMatchObject({
      type: 'error',
      error: { type: 'permission_error' },
    });
  });

  it('is never answered by a fallback outside its list when its model fails; one on the list may answer', async () => {
    const acc = await adminCall(stack, 'POST', '/admin/v1/accounts', { name: 'gemini only' });
    // A blank name on the list would allow nothing: refused, naming it.
    const blank = await adminCall(stack, 'POST', '/admin/v1/keys', {
      account_id: acc.id,
      name: 'blank',
      allowed_models: ['   '],
    });
    expect(blank).toMatchObject({ error: { type: 'invalid_request_error', param: 'allowed_models.0' } });
    await adminCall(stack, 'POST', '/admin/v1/credits', { account_id: acc.id, amount_usd: '5' });
    const keyFor = async (allowed: string[]) => {
      const k = await adminCall(stack, 'POST', '/admin/v1/keys', {
        account_id: acc.id,
        name: allowed.join(' '),
        allowed_models: allowed,
      });
      return new OpenAI({ apiKey: k.key as string, baseURL: `${stack.url}/v1`, maxRetries: 0 });
    };
    // gemini-2.5-flash falls back to gpt-4o-mini (the routing file), which this key may not use.
    const geminiOnly = await keyFor(['gemini/gemini-2.5-flash']);
    for (const stream of [false, true]) {
      stack.fake.script('gemini', [{ fault: '503' }]);
      const e = await geminiOnly.chat.completions
        .create({ model: 'gemini/gemini-2.5-flash', messages: ask(`no fallback ${stream}`), stream })
        .then(async (r) => {
          if (stream) await drain(r as AsyncIterable<OpenAI.ChatCompletionChunk>);
          return r;
        })
        .catch((err: unknown) => err);
      expect(e, `stream ${stream}`).toBeInstanceOf(OpenAI.APIError);
      expect((e as InstanceType<typeof OpenAI.APIError>).status, `stream ${stream}`).toBe(503);
    }
    // The fallback allowed by a name of its own (bare, as a caller would write it): it answers.
    const both = await keyFor(['gemini/gemini-2.5-flash', 'gpt-4o-mini']);
    stack.fake.script('gemini', [{ fault: '503' }]);
    const { data, response } = await both.chat.completions
      .create({ model: 'gemini/gemini-2.5-flash', messages: ask('fallback allowed') })
      .withResponse();
    expect(data.model).toBe('openai/gpt-4o-mini');
    expect(response.headers.get('x-faregate-attempts')).toBe('gemini:503,openai:ok');
  });
});

describe('/v1/models lists what can be called', () => {
  it('hides unpriced models (shown with ?all=true, flagged with the reason), lists aliases with their target', async () => {
    stack.fake.configure({
      provider: 'anthropic',
      models: ['claude-haiku-4-5-20251001', 'claude-sonnet-4-5-20250929', 'claude-sonnet-4-6'],
    });
    await until(async () => (await listModels(true)).some((m) => m.id === 'anthropic/claude-sonnet-4-6'), {
      what: 'the new listing discovered',
    });
    const listed = await listModels();
    expect(listed.every((m) => m.routable)).toBe(true);
    expect(listed.map((m) => m.id)).not.toContain('anthropic/claude-sonnet-4-6');
    const flagged = (await listModels(true)).find((m) => m.id === 'anthropic/claude-sonnet-4-6');
    expect(flagged).toMatchObject({ routable: false });
    expect(flagged?.reason).toMatch(/no price/);
    const refused = await client.chat.completions
      .create({ model: 'anthropic/claude-sonnet-4-6', messages: ask('x') })
      .catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(OpenAI.NotFoundError);

    const haiku = listed.find((m) => m.id === 'anthropic/claude-haiku-4-5');
    expect(haiku?.resolves_to).toBe('anthropic/claude-haiku-4-5-20251001');
    expect(listed.find((m) => m.id === 'fast')?.resolves_to).toBe('openai/gpt-4o-mini');
    // One id, one entry.
    expect(new Set(listed.map((m) => m.id)).size).toBe(listed.length);
    stack.fake.reset();
  });

  it('prototype-named and unknown ids are 404 in OpenAI shape, in the listing and in chat', async () => {
    for (const id of ['__proto__', 'constructor', 'toString', 'openai/__proto__', 'hasOwnProperty']) {
      const r = await fetch(`${stack.url}/v1/models/${id}`, {
        headers: { authorization: `Bearer ${stack.apiKey}` },
      });
      expect(r.status, id).toBe(404);
      expect(((await r.json()) as { error: { code: string } }).error.code, id).toBe('model_not_found');
      const e = await client.chat.completions
        .create({ model: id, messages: ask('x') })
        .catch((x: unknown) => x);
      expect(e, id).toBeInstanceOf(OpenAI.NotFoundError);
    }
    const bad = await fetch(`${stack.url}/v1/models?all=yes`, {
      headers: { authorization: `Bearer ${stack.apiKey}` },
    });
    expect(bad.status).toBe(400);
  });

  it('every listed chat model answers as listed and settles at exactly its tokens × its listed price', async () => {
    // Embedding models are listed too; they answer on /v1/embeddings (test/embeddings.test.ts).
    // `auto` is listed too, priced as the model it chooses (test/providers.test.ts).
    const listed = (await listModels()).filter(
      (m) => !m.capabilities?.includes('embeddings') && m.id !== 'auto',
    );
    expect(listed.length).toBeGreaterThan(15);
    for (const m of listed) {
      const { data, response } = await client.chat.completions
        .create({ model: m.id, messages: ask(`price check ${m.id}`), max_tokens: 20 })
        .withResponse();
      expect(data.model, m.id).toBe(m.resolves_to ?? m.id);
      const requestId = response.headers.get('x-request-id')!;
      const ledger = await settled(requestId);
      expect(micros(costOf(data.usage)), m.id).toBe(ledger.micros);
      const price = m.pricing;
      expect(price, m.id).not.toBeNull();
      const u = data.usage!;
      const cached = u.prompt_tokens_details?.cached_tokens ?? 0;
      const scaled =
        BigInt(u.prompt_tokens - cached) * perMillionMicros(price!.input) +
        BigInt(cached) * perMillionMicros(price!.cached_input ?? price!.input) +
        BigInt(u.completion_tokens) * perMillionMicros(price!.output);
      const expected = Number(scaled) / 1_000_000;
      expect(
        Math.abs(ledger.micros - expected),
        `${m.id}: ${ledger.micros} vs ${expected}`,
      ).toBeLessThanOrEqual(1);
    }
  }, 120_000);
});
