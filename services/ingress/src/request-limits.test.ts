import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { GatewayError } from '@faregate/contracts/errors';
import { makeKeys } from '@faregate/queue/keys';
import { createRedis } from '@faregate/queue/redis';
import { testRedis } from '@faregate/testing/env';
import {
  admitRequest,
  goDuration,
  type LimitState,
  limitHeaders,
  type RequestLimits,
} from './request-limits.ts';

const { url, prefix } = testRedis();
const keys = makeKeys(prefix);
let redis: Redis;
let n = 0;
const tenant = () => ({ accountId: `acct_rl${++n}`, keyId: `key_rl${n}` });
beforeAll(() => {
  redis = createRedis(url);
});
afterAll(() => redis.disconnect());

/** One admission: the state it reported, and the error if refused. */
async function admit(who: { accountId: string; keyId: string }, limits: RequestLimits, tokens = 0) {
  let state: LimitState = {};
  const err = await admitRequest(redis, keys, who, limits, tokens, (s) => {
    state = s;
  }).then(
    () => undefined,
    (e: unknown) => e,
  );
  return { state, err: err as GatewayError | undefined };
}

describe('per-key and per-account request limits', () => {
  it('admit up to the key RPM, then 429 with retry-after; headers count down', async () => {
    const who = tenant();
    const r = [];
    for (let i = 0; i < 4; i++) r.push(await admit(who, { keyRpm: 3 }));
    expect(r.map((x) => x.err === undefined)).toEqual([true, true, true, false]);
    expect(r.map((x) => x.state.requests?.remaining)).toEqual([2, 1, 0, 0]);
    expect(r[0]?.state.tokens).toBeUndefined();
    const refused = r[3]!.err!;
    expect(refused).toBeInstanceOf(GatewayError);
    expect(refused.status).toBe(429);
    expect(refused.code).toBe('rate_limit_exceeded');
    // One request refills in a third of a minute.
    expect(refused.retryAfterMs).toBeGreaterThan(19_000);
    expect(refused.retryAfterMs).toBeLessThanOrEqual(20_000);
    expect(refused.message).toMatch(/requests per minute of this API key/);
    expect(limitHeaders(r[3]!.state)).toEqual({
      'x-ratelimit-limit-requests': '3',
      'x-ratelimit-remaining-requests': '0',
      'x-ratelimit-reset-requests': expect.stringMatching(/^(59\.\d+s|1m0s)$/),
    });
  });

  it('an account limit is shared by its keys; a refused request takes from no limit', async () => {
    const a = tenant();
    const b = { accountId: a.accountId, keyId: `${a.keyId}b` };
    const limits = { keyRpm: 10, accountRpm: 3 };
    expect((await admit(a, limits)).err).toBeUndefined();
    expect((await admit(b, limits)).err).toBeUndefined();
    const third = await admit(a, limits);
    expect(third.err).toBeUndefined();
    // The account's bucket is the tighter one: it is what the headers report.
    expect(third.state.requests).toMatchObject({ limit: 3, remaining: 0 });
    const refused = await admit(b, limits);
    expect(refused.err?.message).toMatch(/this account/);
    // Key b's own bucket still has 9: the refusal took nothing from it.
    expect(Number(await redis.hget(keys.requestLimit(b.accountId, b.keyId), 'r'))).toBe(9);
  });

  it('tokens per minute: counted per request; one larger than the whole limit is refused for good', async () => {
    const who = tenant();
    const limits = { keyTpm: 1_000 };
    const first = await admit(who, limits, 700);
    expect(first.err).toBeUndefined();
    expect(first.state.tokens).toMatchObject({ limit: 1_000, remaining: 300 });
    const second = await admit(who, limits, 400);
    expect(second.err?.retryAfterMs).toBeGreaterThan(5_000);
    const huge = await admit(who, limits, 1_001);
    expect(huge.err?.code).toBe('rate_limit_exceeded');
    expect(huge.err?.retryAfterMs).toBeUndefined();
    expect(huge.err?.message).toMatch(/Request too large/);
  });

  it('refills continuously, and a lowered limit applies at once', async () => {
    const who = tenant();
    const key = keys.requestLimit(who.accountId, who.keyId);
    // Empty a second ago: 60 a minute is one a second back.
    await redis.hset(key, { r: '0', at: String(Date.now() - 1_000) });
    expect((await admit(who, { keyRpm: 60 })).err).toBeUndefined();
    expect((await admit(who, { keyRpm: 60 })).err).toBeDefined();
    const fresh = tenant();
    for (let i = 0; i < 5; i++) await admit(fresh, { keyRpm: 100 });
    // 95 left under the old limit; the new limit of 10 caps it.
    expect((await admit(fresh, { keyRpm: 10 })).state.requests).toMatchObject({ limit: 10, remaining: 9 });
  });

  it("an ingress whose clock is behind (read before a stall, or another host's) refills nothing twice", async () => {
    // The buckets go by Redis's clock. By the caller's, an ingress 30 s behind dated the bucket back,
    // and the next caller refilled it for those 30 s again: a third request at 2 a minute.
    const who = tenant();
    expect((await admit(who, { keyRpm: 2 })).err).toBeUndefined();
    const real = Date.now.bind(Date);
    const clock = vi.spyOn(Date, 'now').mockImplementation(() => real() - 30_000);
    try {
      expect((await admit(who, { keyRpm: 2 })).err).toBeUndefined();
    } finally {
      clock.mockRestore();
    }
    expect((await admit(who, { keyRpm: 2 })).err?.code).toBe('rate_limit_exceeded');
  });

  it('reset durations read as OpenAI writes them', () => {
    expect([
      goDuration(12),
      goDuration(1_000),
      goDuration(59_500),
      goDuration(60_000),
      goDuration(62_500),
    ]).toEqual(['12ms', '1s', '59.5s', '1m0s', '1m2.5s']);
  });
});
