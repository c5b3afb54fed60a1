import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import type { JobData } from '@faregate/contracts/jobs';
import { testRedis, until } from '@faregate/testing/env';
import { Worker } from 'bullmq';
import { poolBacklog } from './backlog.ts';
import { FastLane } from './fast-lane.ts';
import { makeKeys } from './keys.ts';
import { ProviderQueues } from './queues.ts';
import { createRedis } from './redis.ts';

let redis: Redis;
let blocking: Redis;
let workerRedis: Redis;
let queues: ProviderQueues;
const { url, prefix } = testRedis();
const keys = makeKeys(prefix);
let n = 0;

const job = (pool: string): JobData => ({
  v: 1,
  id: `req_backlog${prefix}${++n}`,
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
  blocking = createRedis(url, { blocking: true });
  workerRedis = createRedis(url, { blocking: true });
  queues = new ProviderQueues(redis, keys);
});
afterAll(async () => {
  await queues.close();
  redis.disconnect();
  blocking.disconnect();
  workerRedis.disconnect();
});

describe('poolBacklog', () => {
  it('is 0 for a pool that has never seen a job', async () => {
    expect(await poolBacklog(redis, keys, `empty${prefix}`)).toEqual({
      waiting: 0,
      prioritized: 0,
      delayedDue: 0,
      active: 0,
      lane: 0,
      total: 0,
      ahead: 0,
    });
  });

  it('counts waiting, prioritized, due delayed and active BullMQ jobs and the fast lane, not jobs delayed into the future', async () => {
    const pool = `p${prefix}${++n}`;
    const q = queues.get(pool);
    // 3 waiting, 2 prioritized, 1 delayed by 60 s (not due), 1 delayed by 50 ms (due soon).
    const add = (opts: { priority?: number; delay?: number } = {}) => {
      const data = job(pool);
      return q.add('chat', data, { jobId: data.id, ...opts });
    };
    for (let i = 0; i < 3; i++) await add();
    for (let i = 0; i < 2; i++) await add({ priority: 5 });
    await add({ delay: 60_000 });
    await add({ delay: 50 });
    const now = Date.now();
    const before = await poolBacklog(redis, keys, pool, now);
    expect(before).toMatchObject({ waiting: 3, prioritized: 2, delayedDue: 0, active: 0, lane: 0, total: 5 });
    // Ahead of a new interactive request: the waiting jobs, not the prioritized (batch) ones.
    expect(before.ahead).toBe(3);
    // Once its time has come the short delay counts; the long one never does.
    const later = await poolBacklog(redis, keys, pool, now + 1_000);
    expect(later).toMatchObject({ delayedDue: 1, total: 6, ahead: 4 });
    expect((await poolBacklog(redis, keys, pool, now + 120_000)).delayedDue).toBe(2);
    expect(await q.getJobCounts('waiting', 'prioritized', 'delayed')).toEqual({
      waiting: 3,
      prioritized: 2,
      delayed: 2,
    });

    // The lane: 2 pushed (due), one of them popped and taken (a run in flight): both count, once each.
    const lane = new FastLane(redis, keys, pool, { graceMs: 60_000, leaseMs: 60_000 });
    const a = job(pool);
    await lane.push(a);
    await lane.push(job(pool));
    expect(await poolBacklog(redis, keys, pool, now)).toMatchObject({ lane: 2, ahead: 5 });
    const popped = await lane.pop(blocking, 1, 1);
    expect(popped).toHaveLength(1);
    expect((await poolBacklog(redis, keys, pool, now)).lane).toBe(2);
    const first = FastLane.parse(popped[0] ?? '');
    expect(await lane.take([first?.data.id ?? ''])).toEqual([true]);
    // Taken: running, so no longer ahead of anyone.
    expect(await poolBacklog(redis, keys, pool, now)).toMatchObject({ lane: 2, ahead: 4 });
    await lane.finish(first?.data.id ?? '');
    expect((await poolBacklog(redis, keys, pool, now)).lane).toBe(1);

    // A worker takes one job: it moves from waiting to active, the total stays (3 + 2 + 1 due + 1 lane).
    expect((await poolBacklog(redis, keys, pool, now + 1_000)).total).toBe(7);
    let release = () => {};
    const held = new Promise<void>((r) => {
      release = r;
    });
    const worker = new Worker(q.name, () => held, {
      connection: workerRedis,
      prefix: keys.prefix,
      concurrency: 1,
    });
    try {
      await until(async () => (await poolBacklog(redis, keys, pool, now)).active === 1, {
        what: 'a job active',
      });
      // (The job delayed by 50 ms may have been promoted to waiting meanwhile: counted either way.)
      expect(await poolBacklog(redis, keys, pool, now + 1_000)).toMatchObject({
        prioritized: 2,
        active: 1,
        lane: 1,
        total: 7,
        ahead: 4,
      });
    } finally {
      release();
      await worker.close();
    }
  });

  it('leaves out the runs an ingress hosting the pool runs itself, until they end or are swept to a worker', async () => {
    const pool = `hosted${prefix}`;
    const lane = new FastLane(redis, keys, pool, { graceMs: 30, leaseMs: 200 });
    const hosted = job(pool);
    const worked = job(pool);
    await lane.push(worked);
    // One script: the ingress adopts its own run, a worker takes a pushed one.
    expect(await lane.take([worked.id], [], [{ id: hosted.id, json: JSON.stringify(hosted) }])).toEqual([
      true,
      true,
    ]);
    expect(await poolBacklog(redis, keys, pool)).toMatchObject({ lane: 1, total: 1, ahead: 0 });
    // The hosted run ends: nothing changes for the pool's workers.
    await lane.finish(hosted.id);
    expect(await poolBacklog(redis, keys, pool)).toMatchObject({ lane: 1, total: 1 });
    // A hosted run whose ingress died is the workers' once swept (its lease lapsed): counted again.
    const orphan = job(pool);
    await lane.take([], [], [{ id: orphan.id, json: JSON.stringify(orphan) }]);
    expect((await poolBacklog(redis, keys, pool)).lane).toBe(1);
    const swept = await until(
      async () => {
        const s = await lane.sweep();
        return s.some((x) => x.id === orphan.id) ? s : undefined;
      },
      { what: 'the lapsed hosted run swept' },
    );
    expect(swept.find((x) => x.id === orphan.id)?.kind).toBe('run');
    expect(await redis.scard(keys.fast(pool, 'hosted'))).toBe(0);
    // The worker's run, and the orphan the sweep is handing to BullMQ (`moving`).
    expect((await poolBacklog(redis, keys, pool)).lane).toBe(2);
    // A member left behind (a run swept by a worker that does not know the set) hides no worker's run.
    await redis.sadd(keys.fast(pool, 'hosted'), 'req_gone', worked.id.replace('req_', 'req_x'));
    expect((await poolBacklog(redis, keys, pool)).lane).toBe(2);
    // And the next sweep prunes such members, keeping those of runs still running.
    const running = job(pool);
    // (Adopted under a long lease: not lapsed whatever the machine's pace.)
    const long = new FastLane(redis, keys, pool, { graceMs: 30, leaseMs: 60_000 });
    await long.take([], [], [{ id: running.id, json: JSON.stringify(running) }]);
    await lane.sweep();
    expect(await redis.smembers(keys.fast(pool, 'hosted'))).toEqual([running.id]);
  });
});
