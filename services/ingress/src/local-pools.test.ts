import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeKeys } from '@faregate/queue/keys';
import { LiveHub } from '@faregate/queue/live-hub';
import { createRedis, type RedisClient } from '@faregate/queue/redis';
import { testRedis } from '@faregate/testing/env';
import { chatJob } from '@faregate/testing/job';
import { loadConfig } from './config.ts';
import { LocalPools } from './local-pools.ts';

const { url, prefix } = testRedis();
const keys = makeKeys(prefix);
let sub: RedisClient;
let hub: LiveHub;

beforeAll(() => {
  sub = createRedis(url, { blocking: true, subscriber: true });
  hub = new LiveHub(sub, keys);
});
afterAll(() => sub.disconnect());

const env = (extra: Record<string, string>) => ({
  REDIS_URL: url,
  REDIS_PREFIX: prefix,
  DATABASE_URL: 'postgres://unused',
  FAKE_PROVIDER_URL: 'http://127.0.0.1:9',
  ...extra,
});

describe('LocalPools', () => {
  it('hosts the configured pools it is given; one with no key or base URL is left out, not fatal', async () => {
    const e = env({ INGRESS_POOLS: 'openai, nosuchpool' });
    const pools = await LocalPools.start(loadConfig(e), e, pino({ level: 'silent' }), hub);
    try {
      expect(pools?.providers).toEqual(['openai']);
      // A pool it does not host: the caller pushes the job to the lane as usual.
      expect(await pools?.run('nosuchpool', chatJob({ id: `req_lp${prefix}` }))).toBe(false);
      expect(await pools?.metrics()).toMatch(/^faregate_limit\{limit="attempts",provider="openai"\} \d+$/m);
    } finally {
      await pools?.stop(1_000);
    }
  });

  it('hosts nothing without INGRESS_POOLS', async () => {
    const e = env({});
    expect(await LocalPools.start(loadConfig(e), e, pino({ level: 'silent' }), hub)).toBeUndefined();
  });
});
