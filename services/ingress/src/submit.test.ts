import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { GatewayError } from '@faregate/contracts/errors';
import { FrameStore } from '@faregate/queue/frame-store';
import { followJob } from '@faregate/queue/follow';
import { makeKeys } from '@faregate/queue/keys';
import { LiveHub } from '@faregate/queue/live-hub';
import { createRedis } from '@faregate/queue/redis';
import { testRedis } from '@faregate/testing/env';
import { endUnqueued } from './submit.ts';

const { url, prefix } = testRedis();
const keys = makeKeys(prefix);
let redis: Redis;
let sub: Redis;
let store: FrameStore;
let hub: LiveHub;
let n = 0;
const jobId = () => `req_unqueued${prefix}${++n}`;

beforeAll(() => {
  redis = createRedis(url);
  sub = createRedis(url, { blocking: true });
  store = new FrameStore(redis, keys);
  hub = new LiveHub(sub, keys);
});
afterAll(() => {
  redis.disconnect();
  sub.disconnect();
});

/** The frames a follower of `id` gets until the job ends (as a retry attached to it follows it). */
async function follow(id: string) {
  const got: Array<{ type: string; status?: number; error?: { code: string; message: string } }> = [];
  const h = await followJob(hub, store, id, 0, (raw) => got.push(JSON.parse(raw)));
  return { got, ended: h.ended };
}

describe('a job named to an Idempotency-Key that could not be queued', () => {
  it('ends with the error its request got: a retry following it hears it at once', async () => {
    const id = jobId();
    const retry = await follow(id);
    await endUnqueued(
      store,
      id,
      new GatewayError({ code: 'overloaded', message: 'pool full', retryable: true, retryAfterMs: 1_000 }),
    );
    await retry.ended;
    expect(retry.got).toMatchObject([
      { type: 'error', status: 503, error: { code: 'overloaded', message: 'pool full' } },
    ]);
    expect(await redis.hget(keys.meta(id), 'state')).toBe('failed');
    // A worker that picks the job up after all (the queue answered late) finds it ended.
    expect(await store.claim(id, 'w', 60_000, { account: 'a', model: 'm', created: 0 })).toMatchObject({
      terminal: true,
    });
  });

  it('a failure that is not the gateway’s own error reads as a 503 to retry', async () => {
    const id = jobId();
    const retry = await follow(id);
    await endUnqueued(store, id, new Error('Connection is closed.'));
    await retry.ended;
    expect(retry.got).toMatchObject([{ type: 'error', status: 503, error: { code: 'overloaded' } }]);
  });
});
