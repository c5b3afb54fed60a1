import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { until } from '@faregate/testing/env';
import { type Stack, startStack } from './support/stack.ts';

/**
 * A pool learns its limits from the provider's rate-limit headers (README, Configuration): shown
 * in the admin providers view, enforced once the provider says the window is half spent, so a
 * burst past what the provider has left gets the gateway's 429 instead of the provider's.
 */

let stack: Stack;
let client: OpenAI;

beforeAll(async () => {
  stack = await startStack({
    providers: ['openai', 'anthropic'],
    // A request that would wait for the next window (a minute) ends at once with a 429.
    env: { REQUEST_TIMEOUT_MS: '15000' },
  });
  client = new OpenAI({ apiKey: stack.apiKey, baseURL: `${stack.url}/v1`, maxRetries: 0 });
}, 120_000);

afterAll(async () => {
  await stack?.stop();
});

interface PoolView {
  id: string;
  learned_limits: {
    rpm: number | null;
    tpm: number | null;
    enforced: boolean;
    enforced_until: string | null;
  };
}
async function pool(id: string): Promise<PoolView | undefined> {
  const r = await fetch(`${stack.url}/admin/v1/providers`, {
    headers: { authorization: `Bearer ${stack.adminToken}` },
  });
  expect(r.status).toBe(200);
  const body = (await r.json()) as { data: PoolView[] };
  return body.data.find((p) => p.id === id);
}
const ask = (model: string, content: string) =>
  client.chat.completions.create({ model, messages: [{ role: 'user', content }] });

describe('limits learned from the provider', () => {
  it('Anthropic headers: learned and shown, not enforced while the provider shows plenty of room', async () => {
    await ask('anthropic/claude-haiku-4-5', 'learn from anthropic-ratelimit-*');
    const view = await until(async () => {
      const p = await pool('anthropic');
      return p?.learned_limits.rpm ? p : undefined;
    });
    // The fake advertises 1M requests and 150M input tokens a minute when no rpm is set.
    expect(view.learned_limits).toEqual({
      rpm: 1_000_000,
      tpm: 150_000_000,
      enforced: false,
      enforced_until: null,
    });
  });

  it('OpenAI headers: enforced once half the window is spent; a burst past what is left gets the gateway 429, never the provider one', async () => {
    stack.fake.configure({ provider: 'openai', rpm: 20 });
    stack.fake.clearCalls();
    // Sequential requests until the provider says more than half of its 20 are used (11 or a few
    // more, depending on how much its bucket refilled meanwhile): the limit could bind now.
    let view: PoolView | undefined;
    for (let i = 0; i < 18 && !view?.learned_limits.enforced; i++) {
      await ask('openai/gpt-4o-mini', `sequential ${i}`);
      view = await pool('openai');
    }
    view = await until(async () => {
      const p = await pool('openai');
      return p?.learned_limits.enforced ? p : undefined;
    });
    expect(view.learned_limits).toMatchObject({ rpm: 20, tpm: 20_000, enforced: true });
    expect(Date.parse(view.learned_limits.enforced_until ?? '')).toBeGreaterThan(Date.now() + 30_000);
    const before = stack.fake.calls().filter((c) => c.provider === 'openai' && c.model !== null).length;

    const results = await Promise.all(
      Array.from({ length: 15 }, (_, i) => ask('openai/gpt-4o-mini', `burst ${i}`).catch((e: unknown) => e)),
    );
    const refused = results.filter((r) => r instanceof OpenAI.RateLimitError);
    const served = results.filter((r) => !(r instanceof Error));
    expect(served.length + refused.length).toBe(15);
    // The provider had fewer than 10 left: the window admits what it has left, the rest is refused.
    expect(refused.length).toBeGreaterThan(0);
    expect(served.length).toBeGreaterThan(0);
    for (const r of refused) expect(r.headers?.get('retry-after')).toBeTruthy();
    const upstream = stack.fake.calls().filter((c) => c.provider === 'openai' && c.model !== null);
    expect(upstream.filter((c) => c.status === 429)).toEqual([]);
    expect(upstream).toHaveLength(before + served.length);
  });
});
