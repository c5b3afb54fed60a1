import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import type { ChatRequest } from '@faregate/contracts/chat';
import type { DiscoveryRecord } from '@faregate/contracts/discovery';
import type { GatewayError } from '@faregate/contracts/errors';
import { makeKeys } from '@faregate/queue/keys';
import { createRedis } from '@faregate/queue/redis';
import { testRedis } from '@faregate/testing/env';
import { BUILTIN_MODELS } from '@faregate/catalog/models';
import { catalogWithOverrides, GatewayConfig } from '@faregate/catalog/gateway-config';
import { PriceTable } from '@faregate/catalog/prices';
import { ModelDirectory } from './directory.ts';
import { Router } from './router.ts';

const { url, prefix } = testRedis();
const keys = makeKeys(prefix);
let redis: Redis;
let dir: ModelDirectory;

const pool = (provider: string, ids: string[]): DiscoveryRecord => ({
  v: 1,
  provider,
  kind: provider === 'llama' ? 'openai-compatible' : provider,
  fake: true,
  source: 'provider',
  at: Date.now(),
  models: ids.map((id) => ({ id })),
});
const req = (model: string, extra: Partial<ChatRequest> = {}): ChatRequest => ({
  model,
  messages: [{ role: 'user', content: 'hello' }],
  ...extra,
});

beforeAll(async () => {
  redis = createRedis(url);
  for (const r of [
    pool('openai', ['gpt-4o-mini', 'gpt-5-nano', 'gpt-9-preview', 'text-embedding-3-small']),
    pool('anthropic', ['claude-haiku-4-5-20251001', 'claude-3-5-haiku-20241022']),
    {
      ...pool('llama', ['llama3.2:latest']),
      // As the Ollama preset publishes them (tool_choice: it cannot force a tool call).
      unsupported: ['logit_bias', 'n', 'logprobs', 'top_logprobs', 'tool_choice'],
    },
  ]) {
    await redis.set(keys.models(r.provider), JSON.stringify(r));
    await redis.sadd(keys.pools, r.provider);
  }
  dir = new ModelDirectory(redis, keys);
  await dir.refresh();
});
afterAll(() => redis.disconnect());

const codeOf = (f: () => unknown) => {
  try {
    f();
  } catch (e) {
    return (e as GatewayError).code;
  }
  return 'no error';
};

describe('Router', () => {
  it("a model whose pool has no live worker is served by its live fallbacks; without one it is the pool's 503", () => {
    const fallbacks = { 'gemini/gemini-2.5-flash': ['gemini/gemini-2.5-pro', 'openai/gpt-4o-mini'] };
    const r = new Router(dir, { allowUnpriced: false, expectedPools: ['gemini'], fallbacks });
    for (const name of ['gemini/gemini-2.5-flash', 'gemini-2.5-flash'])
      expect(
        r.plan(req(name)).plan.map((c) => `${c.provider}/${c.model}`),
        name,
      ).toEqual(['openai/gpt-4o-mini']);
    const alone = new Router(dir, { allowUnpriced: false, expectedPools: ['gemini'] });
    expect(codeOf(() => alone.plan(req('gemini/gemini-2.5-flash')))).toBe('provider_unavailable');
    // A pool the deployment does not run is still an unknown model.
    expect(
      codeOf(() => new Router(dir, { allowUnpriced: false, fallbacks }).plan(req('gemini/gemini-2.5-flash'))),
    ).toBe('model_not_found');
  });

  it('a pool registered once whose record lapsed (lost) is waited for without EXPECTED_POOLS: fallbacks, else its 503, never a 404', async () => {
    // Another prefix: this directory sees gemini in the set of pools with no record (every worker
    // gone or frozen), and the others live.
    const k = makeKeys(`${prefix}-lost`);
    for (const r of [pool('openai', ['gpt-4o-mini'])]) {
      await redis.set(k.models(r.provider), JSON.stringify(r));
      await redis.sadd(k.pools, r.provider);
    }
    await redis.sadd(k.pools, 'gemini');
    const lostDir = new ModelDirectory(redis, k);
    await lostDir.refresh();
    expect(lostDir.lostPools()).toEqual(['gemini']);
    const fallbacks = { 'gemini/gemini-2.5-flash': ['openai/gpt-4o-mini'] };
    const r = new Router(lostDir, { allowUnpriced: false, fallbacks });
    for (const name of ['gemini/gemini-2.5-flash', 'gemini-2.5-flash'])
      expect(
        r.plan(req(name)).plan.map((c) => `${c.provider}/${c.model}`),
        name,
      ).toEqual(['openai/gpt-4o-mini']);
    // A key limited to the lost model may not take its stand-in (a fallback, allowed by its own name only).
    const standing = r.plan(req('gemini/gemini-2.5-flash'));
    expect(standing.standingIn?.code).toBe('provider_unavailable');
    const onlyGemini = r.permitted(standing, 'gemini/gemini-2.5-flash', ['gemini/gemini-2.5-flash']);
    expect(onlyGemini.targets).toBe(0);
    expect(onlyGemini.plan).toEqual([]);
    const both = r.permitted(standing, 'gemini/gemini-2.5-flash', [
      'gemini/gemini-2.5-flash',
      'openai/gpt-4o-mini',
    ]);
    expect(both.plan.map((c) => c.provider)).toEqual(['openai']);
    expect(both.targets).toBe(1);
    const alone = new Router(lostDir, { allowUnpriced: false });
    for (const name of ['gemini/gemini-2.5-flash', 'gemini-2.5-flash'])
      expect(
        codeOf(() => alone.plan(req(name))),
        name,
      ).toBe('provider_unavailable');
    // A model of a pool never registered is still unknown; so is a snapshot no one lists.
    expect(codeOf(() => alone.plan(req('claude-haiku-4-5')))).toBe('model_not_found');
    for (const name of ['gemini/gemini-2.5-flash-999', 'gemini-2.5-flash-999']) {
      expect(
        codeOf(() => r.plan(req(name))),
        name,
      ).toBe('model_not_found');
      expect(
        codeOf(() => alone.plan(req(name))),
        name,
      ).toBe('model_not_found');
    }
  });

  it("a key's allowed models narrow the route and its cost: no hold for a fallback the key may not call", () => {
    const fallbacks = { 'openai/gpt-4o-mini': ['anthropic/claude-haiku-4-5-20251001'] };
    const r = new Router(dir, { allowUnpriced: false, fallbacks });
    const full = r.plan(req('openai/gpt-4o-mini', { max_tokens: 10 }));
    expect(full.plan.map((c) => c.provider)).toEqual(['openai', 'anthropic']);
    const alone = new Router(dir, { allowUnpriced: false }).plan(
      req('openai/gpt-4o-mini', { max_tokens: 10 }),
    );
    const narrowed = r.permitted(full, 'openai/gpt-4o-mini', ['openai/gpt-4o-mini']);
    expect(narrowed.plan.map((c) => c.provider)).toEqual(['openai']);
    expect(narrowed.targets).toBe(1);
    // Costed as the route of the allowed model alone (Claude Haiku's worst case is dearer).
    expect(full.callMicros).toBeGreaterThan(alone.callMicros);
    expect(narrowed.callMicros).toBe(alone.callMicros);
    expect(narrowed.inputTokensBound).toBe(alone.inputTokensBound);
    // Both allowed: the whole route, its cost unchanged.
    const both = r.permitted(full, 'openai/gpt-4o-mini', [
      'openai/gpt-4o-mini',
      'anthropic/claude-haiku-4-5',
    ]);
    expect(both.plan).toEqual(full.plan);
    expect(both.callMicros).toBe(full.callMicros);
  });

  it('refuses a discovered model without a price, unless unpriced models are allowed', () => {
    expect(codeOf(() => new Router(dir, { allowUnpriced: false }).plan(req('openai/gpt-9-preview')))).toBe(
      'model_not_found',
    );
    const plan = new Router(dir, { allowUnpriced: true }).plan(req('openai/gpt-9-preview'));
    expect(plan.plan).toEqual([{ provider: 'openai', model: 'gpt-9-preview', contextWindow: 8192 }]);
    expect(plan.callMicros).toBe(0n);
  });

  it('resolves dated, aliased and Ollama names, and holds the maximum cost', () => {
    const r = new Router(dir, { allowUnpriced: false });
    expect(r.plan(req('anthropic/claude-haiku-4-5')).plan[0]?.model).toBe('claude-haiku-4-5-20251001');
    expect(r.plan(req('claude-haiku')).plan[0]?.model).toBe('claude-haiku-4-5-20251001');
    expect(r.plan(req('llama/llama3.2')).plan[0]?.model).toBe('llama3.2:latest');
    // gpt-4o-mini: 1000 output tokens × $0.60/M = 600 µUSD, plus a few input tokens at $0.15/M.
    const hold = r.plan(req('gpt-4o-mini', { max_tokens: 1000 })).callMicros;
    expect(hold).toBeGreaterThanOrEqual(600n);
    expect(hold).toBeLessThan(620n);
  });

  it("holds what a Claude call is sent (max_tokens: the caller's, else the answer's room and the thinking budget), not the model's whole output limit", () => {
    const r = new Router(dir, { allowUnpriced: false });
    const out = (extra: Partial<ChatRequest>) =>
      r.plan(req('claude-haiku-4-5', extra)).callMicros -
      r.plan(req('claude-haiku-4-5', { max_tokens: 1 })).callMicros;
    // Haiku 4.5 writes $5/M: 5 µUSD a token.
    expect(out({})).toBe(5n * (4_096n - 1n));
    expect(out({ max_tokens: 20_000 })).toBe(5n * (20_000n - 1n));
    expect(out({ reasoning_effort: 'high' })).toBe(5n * (16_384n + 4_096n - 1n));
  });

  it("a model known by its routing-file price alone keeps the caller's limit, images and reasoning: its placeholders are not its limits; a priced snapshot is its model", async () => {
    const k = makeKeys(`${prefix}-priced`);
    const record = pool('anthropic', ['claude-next-1', 'claude-haiku-4-5-20251001']);
    await redis.set(k.models('anthropic'), JSON.stringify(record));
    await redis.sadd(k.pools, 'anthropic');
    const price = { inputPerM: '1.00', outputPerM: '10.00' };
    const config = GatewayConfig.parse({
      prices: { 'anthropic/claude-next-1': price, 'anthropic/claude-haiku-4-5-20251001': price },
    });
    const priced = new ModelDirectory(redis, k, new PriceTable(catalogWithOverrides(BUILTIN_MODELS, config)));
    await priced.refresh();
    const r = new Router(priced, { allowUnpriced: false });
    const image = {
      role: 'user' as const,
      content: [{ type: 'image_url' as const, image_url: { url: 'data:image/png;base64,iVBORw0KGgo=' } }],
    };
    for (const model of ['anthropic/claude-next-1', 'anthropic/claude-haiku-4-5-20251001']) {
      // Before: a 400 past a 4,096 placeholder, and images and reasoning refused ('streaming' only).
      const big = r.plan(req(model, { max_tokens: 20_000 }));
      const one = r.plan(req(model, { max_tokens: 1 }));
      expect(big.callMicros - one.callMicros, model).toBe(10n * (20_000n - 1n));
      expect(r.plan(req(model, { messages: [image] })).plan[0]?.provider, model).toBe('anthropic');
      const thinking = r.plan(req(model, { reasoning_effort: 'high' })).callMicros - one.callMicros;
      expect(thinking, model).toBe(10n * (16_384n + 4_096n - 1n));
    }
    // The snapshot priced on its own is its model: its known output limit still bounds a request.
    expect(codeOf(() => r.plan(req('anthropic/claude-haiku-4-5-20251001', { max_tokens: 70_000 })))).toBe(
      'invalid_request_error',
    );
  });

  it("holds a prediction's rejected tokens too (billed as output): its text's bytes at the output price", () => {
    const r = new Router(dir, { allowUnpriced: false });
    const plain = r.plan(req('gpt-4o-mini', { max_tokens: 1000 })).callMicros;
    // 10,000 predicted bytes × $0.60/M = 6,000 µUSD more.
    const predicted = r.plan(
      req('gpt-4o-mini', { max_tokens: 1000, prediction: { type: 'content', content: 'x'.repeat(9_998) } }),
    ).callMicros;
    expect(predicted - plain).toBe(6_000n);
  });

  it('answers model_not_found for a dated snapshot neither served nor in the catalog, never another snapshot', () => {
    const r = new Router(dir, { allowUnpriced: false });
    for (const name of [
      'anthropic/claude-haiku-4-5-20990101',
      'claude-haiku-4-5-20990101',
      'gpt-4o-mini-2099-01-01',
      'openai/gpt-4o-mini-2024-07-18',
      'anthropic/claude-3-5-haiku-20990101',
    ])
      expect(
        codeOf(() => r.plan(req(name))),
        name,
      ).toBe('model_not_found');
    // Served or listed dated names still route, to exactly that model.
    expect(r.plan(req('anthropic/claude-haiku-4-5-20251001')).plan[0]?.model).toBe(
      'claude-haiku-4-5-20251001',
    );
    expect(r.plan(req('claude-3-5-haiku-20241022')).plan[0]?.model).toBe('claude-3-5-haiku-20241022');
  });

  it('answers model_not_found for names no provider defines (made-up -latest, :latest off Ollama, a Gemini version not served), as GET /v1/models/{id} does', async () => {
    // Pools of their own: gemini serves a version (as Google lists it) and the llama pool an untagged name (vLLM).
    const k = makeKeys(`${prefix}-names`);
    for (const r of [
      pool('openai', ['gpt-4o-mini', 'gpt-4o', 'o3']),
      pool('anthropic', [
        'claude-opus-4-5-20251101',
        'claude-haiku-4-5-20251001',
        'claude-3-5-haiku-20241022',
      ]),
      pool('gemini', ['gemini-2.5-flash', 'gemini-2.5-pro', 'gemini-2.0-flash-001']),
      pool('llama', ['llama3.2']),
    ]) {
      await redis.set(k.models(r.provider), JSON.stringify(r));
      await redis.sadd(k.pools, r.provider);
    }
    const namesDir = new ModelDirectory(redis, k);
    await namesDir.refresh();
    const r = new Router(namesDir, { allowUnpriced: false });
    const listed = new Set(r.listing(true).map((l) => l.id));
    for (const name of [
      'gemini-2.5-flash-999',
      'gemini/gemini-2.5-flash-999',
      'gemini-2.5-flash-002',
      'gemini-2.5-pro-001',
      'gpt-4o-latest',
      'gpt-4o-mini-latest',
      'openai/o3-latest',
      'claude-opus-4-5-latest',
      'anthropic/claude-haiku-4-5-latest',
      'gpt-4o-mini:latest',
      'openai/gpt-4o-mini:latest',
      'claude-haiku-4-5:latest',
      'gemini/gemini-2.5-flash:latest',
    ]) {
      expect(
        codeOf(() => r.plan(req(name))),
        name,
      ).toBe('model_not_found');
      expect(listed.has(name) || listed.has(name.slice(name.indexOf('/') + 1)), name).toBe(false);
    }
    const served = (name: string) => {
      const c = r.plan(req(name)).plan[0];
      return `${c?.provider}/${c?.model}`;
    };
    // Names the providers define still answer, each with exactly its model.
    expect(served('gemini-2.0-flash-001')).toBe('gemini/gemini-2.0-flash-001');
    expect(served('gemini/gemini-2.0-flash')).toBe('gemini/gemini-2.0-flash-001');
    expect(served('claude-3-5-haiku-latest')).toBe('anthropic/claude-3-5-haiku-20241022');
    expect(served('anthropic/claude-opus-4-5')).toBe('anthropic/claude-opus-4-5-20251101');
    expect(served('llama3.2:latest')).toBe('llama/llama3.2');
    expect(served('llama/llama3.2')).toBe('llama/llama3.2');
    expect(served('gemini-2.5-flash')).toBe('gemini/gemini-2.5-flash');
    for (const name of ['gemini/gemini-2.0-flash', 'anthropic/claude-3-5-haiku-latest'])
      expect(listed.has(name), name).toBe(true);
  });

  it("holds a Gemini 2.5 Pro request whose prompt may pass 200k tokens at Google's higher tier", async () => {
    const k = makeKeys(`${prefix}-tiers`);
    const r0 = pool('gemini', ['gemini-2.5-pro']);
    await redis.set(k.models('gemini'), JSON.stringify(r0));
    await redis.sadd(k.pools, 'gemini');
    const tierDir = new ModelDirectory(redis, k);
    await tierDir.refresh();
    const r = new Router(tierDir, { allowUnpriced: false });
    const long = r.plan(
      req('gemini/gemini-2.5-pro', {
        max_tokens: 1000,
        messages: [{ role: 'user', content: 'a '.repeat(210_000).trim() }],
      }),
    );
    expect(long.inputTokensBound).toBeGreaterThan(200_000);
    // Every prompt token at $2.50/M and every output token at $15/M, rounded up.
    const tier = (BigInt(long.inputTokensBound) * 2_500_000n + 1000n * 15_000_000n + 999_999n) / 1_000_000n;
    expect(long.callMicros).toBe(tier);
    const short = r.plan(req('gemini/gemini-2.5-pro', { max_tokens: 1000 }));
    expect(short.callMicros).toBe(
      (BigInt(short.inputTokensBound) * 1_250_000n + 1000n * 10_000_000n + 999_999n) / 1_000_000n,
    );
  });

  it('prices dated snapshots through the catalog, as billing does', () => {
    const r = new Router(dir, { allowUnpriced: false });
    const haiku = r.plan(req('anthropic/claude-haiku-4-5', { max_tokens: 100 }));
    expect(haiku.entries[0]?.price?.outputPerM).toBe('5.00');
    // Listed as claude-3-5-haiku-latest, served under its dated id: priced, not refused.
    const old = r.plan(req('anthropic/claude-3-5-haiku-latest', { max_tokens: 100 }));
    expect(old.plan[0]?.model).toBe('claude-3-5-haiku-20241022');
    expect(old.entries[0]?.price?.inputPerM).toBe('0.80');
  });

  it('holds at least what a provider bills for the prompt: 3,000 one-letter words', () => {
    const r = new Router(dir, { allowUnpriced: false });
    const words = req('openai/gpt-4o-mini', {
      max_tokens: 1000,
      messages: [{ role: 'user', content: 'a '.repeat(3000).trim() }],
    });
    // o200k counts 3,001 tokens (plus the chat template): 3,001 × $0.15/M + 1000 × $0.60/M ≈ 1,050 µUSD.
    expect(r.plan(words).callMicros).toBeGreaterThanOrEqual(1_051n);
    expect(r.plan(words).inputTokensBound).toBeGreaterThanOrEqual(3_008);
  });

  it('answers model_not_found for names of Object.prototype members, aliases configured or not', () => {
    const configs = [
      {},
      { aliases: { fast: 'openai/gpt-4o-mini' }, fallbacks: { 'openai/gpt-4o-mini': ['openai/gpt-5-nano'] } },
      { aliases: new Map([['fast', 'openai/gpt-4o-mini']]) },
    ];
    for (const c of configs) {
      const r = new Router(dir, { allowUnpriced: true, ...c });
      for (const name of [
        'constructor',
        '__proto__',
        'toString',
        'valueOf',
        'hasOwnProperty',
        'isPrototypeOf',
      ]) {
        for (const model of [name, `openai/${name}`, `${name}/gpt-4o-mini`, `anthropic/${name}-20251001`]) {
          expect({ model, code: codeOf(() => r.plan(req(model))) }).toEqual({
            model,
            code: 'model_not_found',
          });
        }
      }
    }
  });

  it('follows configured fallback chains and aliases', () => {
    const r = new Router(dir, {
      allowUnpriced: false,
      fallbacks: { 'openai/gpt-4o-mini': ['anthropic/claude-haiku-4-5', 'nope/missing'] },
      aliases: { fast: 'openai/gpt-4o-mini' },
    });
    expect(r.plan(req('fast')).plan.map((c) => `${c.provider}/${c.model}`)).toEqual([
      'openai/gpt-4o-mini',
      'anthropic/claude-haiku-4-5-20251001',
    ]);
  });

  it('auto picks the cheapest capable model', () => {
    const r = new Router(dir, { allowUnpriced: false });
    expect(r.plan(req('auto')).plan[0]).toMatchObject({ provider: 'llama' });
    const tools: ChatRequest['tools'] = [
      { type: 'function', function: { name: 'f', parameters: { type: 'object' } } },
    ];
    const vision = req('auto', {
      messages: [
        { role: 'user', content: [{ type: 'image_url', image_url: { url: 'data:image/png;base64,AA==' } }] },
      ],
      tools,
    });
    expect(r.plan(vision).plan[0]).toMatchObject({ provider: 'openai', model: 'gpt-5-nano' });
    // Named, a model the catalog lists without vision refuses the image rather than answer blind.
    expect(codeOf(() => r.plan({ ...vision, model: 'llama/llama3.2' }))).toBe('invalid_request_error');
  });

  it("auto leaves out models that cannot honour the request's parameters, as a named model refuses them", () => {
    const r = new Router(dir, { allowUnpriced: false });
    const tools: ChatRequest['tools'] = [
      { type: 'function', function: { name: 'f', parameters: { type: 'object' } } },
    ];
    for (const tool_choice of ['required', { type: 'function', function: { name: 'f' } }] as const) {
      const plan = r.plan(req('auto', { tools, tool_choice }));
      expect(plan.plan.length).toBeGreaterThan(0);
      expect(plan.plan.some((c) => c.provider === 'llama')).toBe(false);
      // Named, the host's refusal is a 400 at the ingress, before anything is queued.
      expect(codeOf(() => r.plan(req('llama/llama3.2', { tools, tool_choice })))).toBe(
        'invalid_request_error',
      );
    }
    // tool_choice auto or none: what Ollama does anyway.
    expect(r.plan(req('auto', { tools, tool_choice: 'auto' })).plan[0]).toMatchObject({ provider: 'llama' });
    // reasoning_effort: no model the catalog lists as not reasoning (gpt-4o-mini), as named it is refused.
    const reasoning = r.plan(req('auto', { reasoning_effort: 'low' }));
    expect(reasoning.entries.length).toBeGreaterThan(0);
    for (const e of reasoning.entries) expect(e.capabilities.includes('reasoning'), e.id).toBe(true);
    expect(codeOf(() => r.plan(req('openai/gpt-4o-mini', { reasoning_effort: 'low' })))).toBe(
      'invalid_request_error',
    );
    // reasoning_effort none asks for no reasoning: every model may serve it, a named one that does not reason too.
    const none = r.plan(req('auto', { reasoning_effort: 'none' }));
    expect(none.entries.some((e) => !e.capabilities.includes('reasoning'))).toBe(true);
    expect(r.plan(req('openai/gpt-4o-mini', { reasoning_effort: 'none' })).plan[0]).toMatchObject({
      provider: 'openai',
    });
    // top_k: Anthropic's and Gemini's, not OpenAI's protocol.
    const topK = r.plan(req('auto', { top_k: 3 } as Partial<ChatRequest>));
    expect(topK.plan.map((c) => c.provider)).toEqual(topK.plan.map(() => 'anthropic'));
  });

  it("auto never sends sampling parameters to OpenAI's reasoning models, which refuse them; named, a 400 at the ingress", () => {
    const r = new Router(dir, { allowUnpriced: false });
    // The probe's requests: both went to gpt-5-nano, which OpenAI answers with a 400.
    for (const extra of [
      { temperature: 0.2 },
      { logprobs: true, top_logprobs: 3, temperature: 0 },
      { top_p: 0.5 },
      { presence_penalty: 0.5 },
    ] as Partial<ChatRequest>[]) {
      const plan = r.plan(req('auto', extra));
      expect(plan.entries.length, JSON.stringify(extra)).toBeGreaterThan(0);
      expect(plan.entries.some((e) => e.id === 'gpt-5-nano')).toBe(false);
      expect(codeOf(() => r.plan(req('openai/gpt-5-nano', extra)))).toBe('invalid_request_error');
    }
    // Their defaults are what the model does anyway.
    expect(
      r.plan(req('openai/gpt-5-nano', { temperature: 1, top_p: 1, presence_penalty: 0 })).plan[0],
    ).toMatchObject({ provider: 'openai', model: 'gpt-5-nano' });
    // A non-reasoning OpenAI model takes them all.
    expect(r.plan(req('openai/gpt-4o-mini', { temperature: 0.2, logprobs: true })).plan[0]).toMatchObject({
      model: 'gpt-4o-mini',
    });
  });

  it('embeddings: plans embedding models only, holds input tokens at the embedding price; chat never gets one', () => {
    const r = new Router(dir, { allowUnpriced: false, aliases: { cheap: 'auto' } });
    const e = r.planEmbeddings({ model: 'text-embedding-3-small', input: 'x'.repeat(1_000_000) });
    expect(e.plan).toEqual([{ provider: 'openai', model: 'text-embedding-3-small', contextWindow: 8191 }]);
    // (1,000,000 bytes + 16 overhead) tokens at $0.02 / M (20,000 µUSD per M), rounded up; no output.
    expect(e.callMicros).toBe(20_001n);
    expect(codeOf(() => r.planEmbeddings({ model: 'openai/gpt-4o-mini', input: 'a' }))).toBe(
      'invalid_request_error',
    );
    expect(codeOf(() => r.planEmbeddings({ model: 'anthropic/claude-haiku-4-5', input: 'a' }))).toBe(
      'invalid_request_error',
    );
    expect(codeOf(() => r.plan(req('text-embedding-3-small')))).toBe('invalid_request_error');
    // `auto` (and an alias to it) never picks an embedding model, however cheap.
    expect(r.plan(req('auto')).entries.some((x) => x.capabilities.includes('embeddings'))).toBe(false);
    expect(r.listing().find((l) => l.id === 'cheap')?.routable).toBe(true);
    expect(r.listing().map((l) => l.id)).toContain('openai/text-embedding-3-small');
  });

  it('a fallback that cannot honour a parameter is left out; the model asked for cannot be: a 400 naming it', () => {
    const r = new Router(dir, {
      allowUnpriced: false,
      fallbacks: {
        'anthropic/claude-haiku-4-5': ['openai/gpt-4o-mini'],
        'openai/gpt-4o-mini': ['anthropic/claude-haiku-4-5'],
      },
    });
    // gpt-4o-mini takes `seed`, its fallback does not: the route is gpt-4o-mini alone.
    const plan = r.plan(req('openai/gpt-4o-mini', { seed: 3 }));
    expect(plan.plan.map((c) => c.provider)).toEqual(['openai']);
    // Claude cannot take `seed`: a 400, never gpt-4o-mini answering in its place.
    expect(() => r.plan(req('anthropic/claude-haiku-4-5', { seed: 3 }))).toThrowError(
      expect.objectContaining({ param: 'seed', message: expect.stringContaining('anthropic') }),
    );
    expect(() => r.plan(req('anthropic/claude-haiku-4-5', { n: 3 }))).toThrowError(
      expect.objectContaining({ param: 'n' }),
    );
    const only = new Router(dir, { allowUnpriced: false });
    expect(() => only.plan(req('anthropic/claude-haiku-4-5', { seed: 3 }))).toThrowError(
      expect.objectContaining({ param: 'seed', message: expect.stringContaining('anthropic') }),
    );
  });

  it('a content part a target cannot take is a 400 naming the part, before queueing; a fallback that cannot is left out', () => {
    const r = new Router(dir, {
      allowUnpriced: false,
      fallbacks: {
        'anthropic/claude-haiku-4-5': ['openai/gpt-4o-mini'],
        'openai/gpt-4o-mini': ['anthropic/claude-haiku-4-5'],
      },
    });
    const audio = (model: string) =>
      req(model, {
        messages: [
          {
            role: 'user',
            content: [
              { type: 'text', text: 'hi' },
              { type: 'input_audio', input_audio: { data: 'AAAA', format: 'wav' } },
            ],
          },
        ],
      });
    // gpt-4o-mini takes the audio, its Claude fallback cannot: the route is gpt-4o-mini alone.
    expect(r.plan(audio('openai/gpt-4o-mini')).plan.map((c) => c.provider)).toEqual(['openai']);
    // Claude asked for: a 400 naming the part, never gpt-4o-mini answering in its place.
    expect(() => r.plan(audio('anthropic/claude-haiku-4-5'))).toThrowError(
      expect.objectContaining({
        code: 'invalid_request_error',
        param: 'messages.0.content.1',
        message: expect.stringContaining('anthropic: it takes no audio input'),
      }),
    );
    const file = req('claude-haiku-4-5', {
      messages: [{ role: 'user', content: [{ type: 'file', file: { file_id: 'file-abc' } }] }],
    });
    expect(() => r.plan(file)).toThrowError(expect.objectContaining({ param: 'messages.0.content.0' }));
    // An image to a model the catalog lists without vision names the image part too.
    const image = req('llama/llama3.2', {
      messages: [
        { role: 'user', content: 'look' },
        { role: 'user', content: [{ type: 'image_url', image_url: { url: 'data:image/png;base64,AA==' } }] },
      ],
    });
    expect(() => r.plan(image)).toThrowError(expect.objectContaining({ param: 'messages.1.content.0' }));
  });

  it('embeddings dimensions past the catalog vector size, or on a model that does not shorten, are a 400', () => {
    const r = new Router(dir, { allowUnpriced: true });
    const param = (model: string, dimensions: number) => {
      try {
        r.planEmbeddings({ model, input: 'x', dimensions });
      } catch (e) {
        return (e as GatewayError).param;
      }
      return undefined;
    };
    expect(param('openai/text-embedding-3-small', 1537)).toBe('dimensions');
    expect(param('openai/text-embedding-3-small', 1536)).toBeUndefined();
    expect(param('openai/text-embedding-3-small', 8)).toBeUndefined();
  });

  it("a host's own refusals (its preset's, published by its pool) are a 400 naming the parameter, before any queue", () => {
    const r = new Router(dir, { allowUnpriced: true });
    const refused = (extra: Partial<ChatRequest>) => {
      try {
        r.plan(req('llama/llama3.2', extra));
      } catch (e) {
        return { param: (e as GatewayError).param, message: (e as GatewayError).message };
      }
      return undefined;
    };
    expect(refused({ logprobs: true })).toEqual({
      param: 'logprobs',
      message: "'logprobs' is not supported by llama.",
    });
    expect(refused({ n: 2 })).toMatchObject({ param: 'n' });
    // Defaults are not refusals: n 1, logprobs false.
    expect(refused({ n: 1, logprobs: false })).toBeUndefined();
    // Another host takes them.
    expect(() => r.plan(req('openai/gpt-4o-mini', { logprobs: true, n: 2 }))).not.toThrow();
  });

  it('an assistant turn whose tool calls are not all answered by tool messages is a 400 naming the ids', () => {
    const r = new Router(dir, { allowUnpriced: false });
    const call = (id: string) => ({
      id,
      type: 'function' as const,
      function: { name: 'f', arguments: '{}' },
    });
    const messages = (...rest: ChatRequest['messages']): ChatRequest['messages'] => [
      { role: 'user', content: 'go' },
      { role: 'assistant', content: null, tool_calls: [call('call_a'), call('call_b')] },
      ...rest,
    ];
    const answered = req('openai/gpt-4o-mini', {
      messages: messages(
        { role: 'tool', tool_call_id: 'call_b', content: '2' },
        { role: 'tool', tool_call_id: 'call_a', content: '1' },
        { role: 'user', content: 'and?' },
      ),
    });
    expect(r.plan(answered).plan.length).toBeGreaterThan(0);
    for (const rest of [
      [
        { role: 'tool', tool_call_id: 'call_a', content: '1' },
        { role: 'user', content: 'and?' },
      ],
      [{ role: 'user', content: 'and?' }],
      [{ role: 'tool', tool_call_id: 'call_a', content: '1' }],
    ] as ChatRequest['messages'][]) {
      let err: GatewayError | undefined;
      try {
        r.plan(req('openai/gpt-4o-mini', { messages: messages(...rest) }));
      } catch (e) {
        err = e as GatewayError;
      }
      expect(err?.code).toBe('invalid_request_error');
      expect(err?.param).toBe('messages.1.tool_calls');
      expect(err?.message).toContain('call_b');
    }
  });

  it('a tool message that answers no call of the assistant turn right before its run is a 400 naming it, as OpenAI answers', () => {
    const r = new Router(dir, { allowUnpriced: false });
    const call = (id: string) => ({
      id,
      type: 'function' as const,
      function: { name: 'f', arguments: '{}' },
    });
    const refusal = (messages: ChatRequest['messages']) => {
      try {
        r.plan(req('anthropic/claude-haiku-4-5', { messages }));
      } catch (e) {
        return e as GatewayError;
      }
      return undefined;
    };
    // No assistant turn with tool calls before it.
    expect(
      refusal([
        { role: 'user', content: 'x' },
        { role: 'tool', tool_call_id: 'c1', content: 'r' },
      ]),
    ).toMatchObject({ code: 'invalid_request_error', param: 'messages.1.role' });
    // An id the turn before did not call.
    const unknown = refusal([
      { role: 'user', content: 'x' },
      { role: 'assistant', content: null, tool_calls: [call('c1')] },
      { role: 'tool', tool_call_id: 'c1', content: 'r' },
      { role: 'tool', tool_call_id: 'c2', content: 'r' },
    ]);
    expect(unknown).toMatchObject({ param: 'messages.3.tool_call_id' });
    expect(unknown?.message).toContain("'c2' not found");
    // Two answers to one call: the second is named.
    const twice = refusal([
      { role: 'user', content: 'x' },
      { role: 'assistant', content: null, tool_calls: [call('c1'), call('c2')] },
      { role: 'tool', tool_call_id: 'c1', content: 'r' },
      { role: 'tool', tool_call_id: 'c1', content: 'again' },
      { role: 'tool', tool_call_id: 'c2', content: 'r' },
    ]);
    expect(twice).toMatchObject({ code: 'invalid_request_error', param: 'messages.3.tool_call_id' });
    expect(twice?.message).toContain("'c1' is answered by more than one message with role 'tool'");
    // A result after the conversation went on: the calls it may answer are gone.
    expect(
      refusal([
        { role: 'user', content: 'x' },
        { role: 'assistant', content: null, tool_calls: [call('c1')] },
        { role: 'tool', tool_call_id: 'c1', content: 'r' },
        { role: 'user', content: 'y' },
        { role: 'tool', tool_call_id: 'c1', content: 'r' },
      ]),
    ).toMatchObject({ param: 'messages.4.role' });
  });

  it('a max_tokens above what the model writes is a 400 naming it, before any call; a fallback that cannot is left out', () => {
    const r = new Router(dir, {
      allowUnpriced: false,
      fallbacks: { 'anthropic/claude-haiku-4-5': ['openai/gpt-4o-mini'] },
    });
    // gpt-4o-mini writes at most 16,384 tokens (the catalog's limit).
    expect(r.plan(req('openai/gpt-4o-mini', { max_tokens: 16_384 })).plan).toHaveLength(1);
    expect(() => r.plan(req('openai/gpt-4o-mini', { max_tokens: 100_000 }))).toThrowError(
      expect.objectContaining({
        code: 'invalid_request_error',
        param: 'max_tokens',
        message: expect.stringContaining('at most 16384'),
      }),
    );
    expect(() => r.plan(req('openai/gpt-4o-mini', { max_completion_tokens: 100_000 }))).toThrowError(
      expect.objectContaining({ param: 'max_completion_tokens' }),
    );
    // Claude (64,000) takes 20,000; its fallback cannot, so it is left out of the route.
    expect(
      r.plan(req('anthropic/claude-haiku-4-5', { max_tokens: 20_000 })).plan.map((c) => c.provider),
    ).toEqual(['anthropic']);
    // `auto` picks among the models that can write that much.
    const auto = r.plan(req('auto', { max_tokens: 100_000 }));
    expect(auto.entries.every((e) => e.maxOutputTokens >= 100_000)).toBe(true);
  });
});
