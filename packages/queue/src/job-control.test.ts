import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { testRedis } from '@faregate/testing/env';
import { parseJobMeta } from '@faregate/contracts/job-control';
import { FrameStore } from './frame-store.ts';
import { listenCancels, readJobMeta, readJobStates, requestCancel } from './job-control.ts';
import { makeKeys } from './keys.ts';
import { createRedis } from './redis.ts';

let redis: Redis;
let sub: Redis;
let store: FrameStore;
const { url, prefix } = testRedis();
const keys = makeKeys(prefix);
let n = 0;
const jobId = () => `req_jc${prefix}${++n}`;

beforeAll(() => {
  redis = createRedis(url);
  sub = createRedis(url, { blocking: true });
  store = new FrameStore(redis, keys);
});
afterAll(() => {
  redis.disconnect();
  sub.disconnect();
});

describe('job control', () => {
  it('reads the record the frame store writes (claim, then a terminal state)', async () => {
    const id = jobId();
    expect(await readJobMeta(redis, keys, id)).toBeUndefined();
    await store.claim(id, 'owner-1', 60_000, { account: 'acct_a', model: 'm', created: 1_700_000_000_123 });
    expect(await readJobMeta(redis, keys, id)).toEqual({
      account: 'acct_a',
      model: 'm',
      created: 1_700_000_000_123,
      state: 'running',
      owner: 'owner-1',
      cancel: false,
    });
    await store.append(id, [], { owner: 'owner-1', ttlMs: 60_000, state: 'completed' });
    expect((await readJobMeta(redis, keys, id))?.state).toBe('completed');
  });

  it('reads the record of an async job (written with its first frame, no owner)', async () => {
    const id = jobId();
    await store.append(id, [{ type: 'accepted', model: 'm', created: 1 }], {
      owner: '',
      ttlMs: 60_000,
      state: 'queued',
      record: { account: 'acct_a', model: 'm', created: 1000 },
    });
    expect(await readJobMeta(redis, keys, id)).toEqual({
      account: 'acct_a',
      model: 'm',
      created: 1000,
      state: 'queued',
      cancel: false,
    });
  });

  it('treats unreadable fields as absent', () => {
    expect(parseJobMeta({ account: 'acct_a', created: 'soon', state: 'dreaming', cancel: 'yes' })).toEqual({
      account: 'acct_a',
      cancel: false,
    });
    expect(parseJobMeta({})).toBeUndefined();
  });

  it('reads many states in one go, undefined where there is no record', async () => {
    const [a, b] = [jobId(), jobId()];
    await store.claim(a, 'o', 60_000, { account: 'acct_a', model: 'm', created: 1 });
    expect(await readJobStates(redis, keys, [a, b])).toEqual(['running', undefined]);
    expect(await readJobStates(redis, keys, [])).toEqual([]);
  });

  it('flags the record and publishes the id on the cancel channel; a later claim sees the flag', async () => {
    const id = jobId();
    const { promise: heard, resolve } = Promise.withResolvers<unknown>();
    const stop = await listenCancels(sub, keys, (c) => c.jobId === id && resolve(c));
    await requestCancel(redis, keys, id, 60_000);
    expect(await heard).toEqual({ jobId: id, unstarted: false });
    expect(await readJobMeta(redis, keys, id)).toEqual({ cancel: true });
    expect(await redis.pttl(keys.meta(id))).toBeGreaterThan(0);
    const c = await store.claim(id, 'o', 60_000, { account: 'acct_a', model: 'm', created: 1 });
    expect(c.cancelled).toBe(true);
    await stop();
  });

  it('a cancel of the start only flags the record the same, and says so on the channel', async () => {
    const id = jobId();
    const { promise: heard, resolve } = Promise.withResolvers<unknown>();
    const stop = await listenCancels(sub, keys, (c) => c.jobId === id && resolve(c));
    await requestCancel(redis, keys, id, 60_000, { unstarted: true });
    expect(await heard).toEqual({ jobId: id, unstarted: true });
    expect(await readJobMeta(redis, keys, id)).toEqual({ cancel: true });
    await stop();
  });
});
