import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GatewayError } from '@faregate/contracts/errors';
import { FrameStore } from '@faregate/queue/frame-store';
import { makeKeys } from '@faregate/queue/keys';
import { createRedis } from '@faregate/queue/redis';
import { testRedis } from '@faregate/testing/env';
import { dropUnstarted } from './driver.ts';

const { url, prefix } = testRedis();
const keys = makeKeys(prefix);
let redis: Redis;
let store: FrameStore;
let n = 0;
const record = { account: 'acct', model: 'm', created: 0 };

beforeAll(() => {
  redis = createRedis(url);
  store = new FrameStore(redis, keys);
});
afterAll(() => redis.disconnect());

/** A line's job as the ingress records it when it feeds the line (before queueing it). */
async function fed(): Promise<string> {
  const id = `req_drop${prefix}${++n}`;
  await store.append(id, [{ type: 'accepted', model: 'm', created: 0 }], {
    owner: '',
    ttlMs: 60_000,
    state: 'queued',
    record,
  });
  return id;
}

describe('a driver taking a batch over: which lines it feeds again', () => {
  it('a line recorded and never started: its record is dropped and it is fed again', async () => {
    const id = await fed();
    expect(await dropUnstarted(redis, keys, id)).toBe(true);
    expect(await redis.exists(keys.meta(id), keys.frames(id))).toBe(0);
  });

  it('a line never even recorded (the feeding process died first): fed again', async () => {
    expect(await dropUnstarted(redis, keys, `req_drop${prefix}none`)).toBe(true);
  });

  it('a line whose job ended meanwhile (its done frame claimed it): kept, not fed again (it would run twice)', async () => {
    const id = await fed();
    // A batch line's first start writes nothing before its done frame, which claims the job.
    await store.append(
      id,
      [
        {
          type: 'error',
          status: 500,
          error: new GatewayError({ code: 'internal_error', message: 'x' }).toJSON(),
        },
      ],
      {
        owner: 'w:0:1',
        claim: record,
        ttlMs: 60_000,
        state: 'failed',
      },
    );
    expect(await dropUnstarted(redis, keys, id)).toBe(false);
    expect(await redis.hget(keys.meta(id), 'state')).toBe('failed');
  });
});
