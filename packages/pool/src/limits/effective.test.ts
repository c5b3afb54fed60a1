import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseLearnedLimits } from '@faregate/contracts/pool-control';
import type { RateLimitInfo } from '@faregate/providers/types';
import { makeKeys } from '@faregate/queue/keys';
import { createRedis } from '@faregate/queue/redis';
import { testRedis, until } from '@faregate/testing/env';
import { PoolLimits } from './effective.ts';
import { PoolLimiter } from './limiter.ts';

const { url, prefix } = testRedis();
const keys = makeKeys(prefix);
let redis: Redis;
let n = 0;
const pool = () => `learn${++n}`;
beforeAll(() => {
  redis = createRedis(url);
});
afterAll(() => redis.disconnect());

const WINDOW = 60_000;
const base = { attempts: 3 };
/** OpenAI's headers as the adapter reads them: a 500 RPM / 200k TPM tier with `left` requests left. */
const openai = (left: number, tokensLeft = 200_000): RateLimitInfo => ({
  limitRequests: 500,
  remainingRequests: left,
  resetRequestsMs: 100,
  limitTokens: 200_000,
  remainingTokens: tokensLeft,
  resetTokensMs: 100,
});

/** Counts commands of one name sent on the shared client from now on. */
function countCommands(name: string): () => number {
  let count = 0;
  const send = redis.sendCommand.bind(redis);
  redis.sendCommand = (cmd, ...rest) => {
    if (cmd.name === name) count++;
    return send(cmd, ...rest);
  };
  return () => count;
}

const windowCount = async (p: string, field: 'r' | 't') => {
  const h = await redis.hgetall(keys.rateWindow(p, 0));
  return Object.entries(h)
    .filter(([k]) => k.startsWith(field))
    .reduce((s, [, v]) => s + Number(v), 0);
};

describe('limits learned from the provider', () => {
  it('are learned once (not written per response) and shared, but not enforced while the provider shows room', async () => {
    const p = pool();
    const a = new PoolLimits(redis, keys, p, base, WINDOW);
    const limiter = new PoolLimiter(redis, keys, p, 1, { windowMs: WINDOW });
    const hsets = countCommands('hset');
    for (let i = 0; i < 50; i++) expect(a.observe(0, openai(499 - i), limiter)).toBe(false);
    expect(hsets()).toBe(1);
    expect(a.learned).toMatchObject({ rpm: 500, tpm: 200_000 });
    // Far from the limit: admission stays local (no shared limit in force).
    expect(a.current().rpm).toBeUndefined();
    const b = new PoolLimits(redis, keys, p, base, WINDOW);
    await until(async () => (await b.refresh()) && b.learned.rpm === 500, {
      what: 'b reads the learned rpm',
    });
    expect(b.learned.tpm).toBe(200_000);
    expect(b.current().rpm).toBeUndefined();
  });

  it('are enforced in every process once the provider reports a window half spent, with what it counted seeded into the window', async () => {
    const p = pool();
    const a = new PoolLimits(redis, keys, p, base, WINDOW);
    const limiter = new PoolLimiter(redis, keys, p, 1, { windowMs: WINDOW });
    expect(a.observe(0, openai(300), limiter)).toBe(false);
    // 260 of 500 used: the limit could bind now.
    expect(a.observe(0, openai(240), limiter)).toBe(true);
    expect(a.current()).toMatchObject({ rpm: 500, tpm: 200_000 });
    await until(async () => (await windowCount(p, 'r')) === 260, { what: 'the 260 used requests seeded' });
    // Tokens were not half spent but the TPM is enforced with the RPM: its used tokens (0) seeded.
    expect(await windowCount(p, 't')).toBe(0);
    // More hot responses neither seed again nor rewrite the record within half a window.
    const hsets = countCommands('hset');
    for (let i = 0; i < 20; i++) expect(a.observe(0, openai(200 - i), limiter)).toBe(false);
    expect(hsets()).toBe(0);
    expect(await windowCount(p, 'r')).toBe(260);
    const b = new PoolLimits(redis, keys, p, base, WINDOW);
    expect((await b.refresh()).rpm).toBe(500);
    // The enforced limit admits what is left of the provider's window and no more.
    limiter.settings = { ...limiter.settings, rpm: 500 };
    const admitted = [];
    for (let i = 0; i < 245; i++) admitted.push(await limiter.acquire(0));
    expect(admitted.filter((x) => x.ok)).toHaveLength(240);
  });

  it('configured limits (file, environment, admin overrides) take precedence over learned ones', async () => {
    const p = pool();
    const limiter = new PoolLimiter(redis, keys, p, 1, { windowMs: WINDOW });
    const a = new PoolLimits(redis, keys, p, { attempts: 3, rpm: 100 }, WINDOW);
    a.observe(0, openai(10, 10_000), limiter);
    expect(a.current()).toMatchObject({ rpm: 100, tpm: 200_000 });
    // The RPM was configured, so only the tokens the provider counted go into the window.
    await until(async () => (await windowCount(p, 't')) === 190_000, { what: 'used tokens seeded' });
    expect(await windowCount(p, 'r')).toBe(0);
    await redis.set(keys.poolLimits(p), JSON.stringify({ tpm: 50_000, rpm: null }));
    // `null` removes the configured RPM: the learned one applies again.
    expect(await a.refresh()).toMatchObject({ rpm: 500, tpm: 50_000 });
  });

  it('keep the smallest limit a provider key reported (limits per model): no rewrite when models alternate', async () => {
    const p = pool();
    const limiter = new PoolLimiter(redis, keys, p, 1, { windowMs: WINDOW });
    const a = new PoolLimits(redis, keys, p, base, WINDOW);
    const hsets = countCommands('hset');
    for (let i = 0; i < 10; i++) {
      a.observe(0, { limitRequests: 5_000, remainingRequests: 4_999 }, limiter);
      a.observe(0, { limitRequests: 500, remainingRequests: 499 }, limiter);
    }
    expect(hsets()).toBe(2);
    expect(a.learned.rpm).toBe(500);
    expect(await redis.hget(keys.poolLearned(p), 'rpm:0')).toBe('500');
  });

  it('take the smallest limit over the provider keys, and per window when the window is not a minute', async () => {
    const p = pool();
    const limiter = new PoolLimiter(redis, keys, p, 2, { windowMs: 6_000 });
    const a = new PoolLimits(redis, keys, p, base, 6_000);
    a.observe(0, { limitRequests: 900, remainingRequests: 800 }, limiter);
    a.observe(1, { limitRequests: 600, remainingRequests: 100 }, limiter);
    expect(a.learned.rpm).toBe(600);
    // 600 a minute is 60 per 6 s window; the 500 used are 50 of it.
    expect(a.current().rpm).toBe(60);
    await until(async () => Number(Object.values(await redis.hgetall(keys.rateWindow(p, 1)))[0]) === 50, {
      what: 'key 1 window seeded',
    });
  });

  it('Anthropic: the input-token limit is the learned TPM (its output limit is kept by the remaining/reset pause)', async () => {
    const p = pool();
    const limiter = new PoolLimiter(redis, keys, p, 1, { windowMs: WINDOW });
    const a = new PoolLimits(redis, keys, p, base, WINDOW);
    a.observe(
      0,
      {
        limitRequests: 50,
        remainingRequests: 49,
        limitTokens: 8_000,
        remainingTokens: 8_000,
        limitInputTokens: 40_000,
        remainingInputTokens: 10_000,
        limitOutputTokens: 8_000,
        remainingOutputTokens: 8_000,
      },
      limiter,
    );
    expect(a.learned).toMatchObject({ rpm: 50, tpm: 40_000 });
    expect(a.current()).toMatchObject({ rpm: 50, tpm: 40_000 });
  });

  it('stop being enforced a window after the provider last showed them binding', async () => {
    const p = pool();
    const limiter = new PoolLimiter(redis, keys, p, 1, { windowMs: 200 });
    const a = new PoolLimits(redis, keys, p, base, 200);
    a.observe(0, { limitRequests: 600, remainingRequests: 0 }, limiter);
    expect(a.current(Date.now()).rpm).toBe(2);
    expect(a.current(Date.now() + 250).rpm).toBeUndefined();
  });

  it('a learned-limits record with hostile or broken fields reads as what is valid in it', () => {
    expect(
      parseLearnedLimits(
        Object.fromEntries([
          ['__proto__', '5'],
          ['constructor', '7'],
          ['rpm:0', 'abc'],
          ['rpm:1', '-4'],
          ['rpm:2', '120'],
          ['tpm:x', '9'],
          ['tpm:0', '1e400'],
          ['hotUntil', '12'],
        ]),
      ),
    ).toEqual({ rpm: 120, hotUntil: 12 });
    expect(parseLearnedLimits({})).toEqual({});
  });
});
