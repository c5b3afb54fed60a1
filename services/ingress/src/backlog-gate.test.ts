import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import type { JobData } from '@faregate/contracts/jobs';
import { GatewayError } from '@faregate/contracts/errors';
import { testRedis, until } from '@faregate/testing/env';
import { makeKeys } from '@faregate/queue/keys';
import { ProviderQueues } from '@faregate/queue/queues';
import { createRedis } from '@faregate/queue/redis';
import { BacklogGate } from './backlog-gate.ts';
import { BATCH_PRIORITY } from './openai-batches/driver.ts';

let redis: Redis;
let queues: ProviderQueues;
const { url, prefix } = testRedis();
const keys = makeKeys(prefix);
let n = 0;
const job = (pool: string): JobData => ({
  v: 1,
  id: `req_gate${prefix}${++n}`,
  account: 'acct_t',
  key: 'key_t',
  request: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] },
  requestedModel: 'gpt-4o-mini',
  plan: [{ provider: pool, model: 'gpt-4o-mini' }],
  hop: 0,
  deltas: false,
  created: Date.now(),
  deadline: Date.now() + 60_000,
  attempts: [],
});

beforeAll(() => {
  redis = createRedis(url);
  queues = new ProviderQueues(redis, keys);
});
afterAll(async () => {
  await queues.close();
  redis.disconnect();
});

const refusal = (f: () => void): GatewayError | undefined => {
  try {
    f();
    return undefined;
  } catch (e) {
    return e as GatewayError;
  }
};

describe('BacklogGate', () => {
  it("refuses with 503 overloaded and retry-after once the pool's backlog reaches the bound, and admits again once it drains", async () => {
    const pool = `gate${prefix}`;
    const gate = new BacklogGate(redis, keys, 3, 10);
    for (let i = 0; i < 3; i++) await queues.add(job(pool));
    // The first call starts the read; the figure it brings back refuses the next calls.
    const err = await until(async () => {
      await new Promise((r) => setTimeout(r, 15));
      return refusal(() => gate.admit(pool));
    });
    expect(err).toBeInstanceOf(GatewayError);
    expect(err?.status).toBe(503);
    expect(err?.code).toBe('overloaded');
    expect(err?.retryAfterMs).toBe(1_000);
    expect(err?.message).toMatch(/3 requests queued/);
    await queues.get(pool).drain();
    await until(async () => {
      await new Promise((r) => setTimeout(r, 15));
      return refusal(() => gate.admit(pool)) === undefined;
    });
  });

  it('batch lines never count: any number of them queued leaves interactive requests admitted', async () => {
    // Batch lines wait at BATCH_PRIORITY, behind every interactive request. Counting them let four
    // batches (256 lines in flight each) refuse every interactive request at the default bound, and
    // the batch driver, seeing no interactive work, never yielded.
    const pool = `batchgate${prefix}`;
    // A bound of 10: more than the admits below can add up to between two reads, even when a
    // loaded machine slows the reads down, and half the batch lines queued.
    const gate = new BacklogGate(redis, keys, 10, 10);
    for (let i = 0; i < 20; i++) await queues.add(job(pool), 10, { priority: BATCH_PRIORITY });
    // Several reads of the pool's backlog (every 10 ms), each bringing back 20 prioritized jobs.
    const t0 = Date.now();
    while (Date.now() - t0 < 100) {
      await new Promise((r) => setTimeout(r, 15));
      expect(refusal(() => gate.admit(pool))).toBeUndefined();
    }
    // Work queued ahead of a new request does count, with the batch lines still there.
    for (let i = 0; i < 10; i++) await queues.add(job(pool));
    const err = await until(async () => {
      await new Promise((r) => setTimeout(r, 15));
      return refusal(() => gate.admit(pool));
    });
    expect(err?.code).toBe('overloaded');
    await queues.get(pool).obliterate({ force: true });
  });

  it('counts what it admits between reads, and a bound of 0 admits everything', () => {
    const pool = `fresh${prefix}`;
    const gate = new BacklogGate(redis, keys, 2, 60_000);
    gate.admit(pool);
    gate.admit(pool);
    expect(refusal(() => gate.admit(pool))?.code).toBe('overloaded');
    const open = new BacklogGate(redis, keys, 0);
    for (let i = 0; i < 100; i++) open.admit(pool);
  });
});
