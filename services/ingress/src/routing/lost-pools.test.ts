import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import type { JobData } from '@faregate/contracts/jobs';
import { FastLanes } from '@faregate/queue/fast-lane';
import { FrameStore } from '@faregate/queue/frame-store';
import { makeKeys } from '@faregate/queue/keys';
import { ProviderQueues } from '@faregate/queue/queues';
import { createRedis } from '@faregate/queue/redis';
import { testRedis, until } from '@faregate/testing/env';
import { chatJob } from '@faregate/testing/job';
import { LostPools } from './lost-pools.ts';

const { url, prefix } = testRedis();
const keys = makeKeys(prefix);
let redis: Redis;
let queues: ProviderQueues;
let lanes: FastLanes;
let store: FrameStore;
let n = 0;

const PLAN = [
  { provider: 'openai', model: 'gpt-4o-mini' },
  { provider: 'gemini', model: 'gemini-2.5-flash' },
  { provider: 'anthropic', model: 'claude-haiku-4-5' },
];
const job = (over: Partial<JobData> = {}): JobData =>
  chatJob({ id: `req_lost${prefix}${++n}`, plan: PLAN, ...over } as Parameters<typeof chatJob>[0]);

const silent = { warn: () => {}, info: () => {} };

beforeAll(() => {
  redis = createRedis(url);
  queues = new ProviderQueues(redis, keys);
  lanes = new FastLanes(redis, keys, { graceMs: 30, leaseMs: 60_000 });
  store = new FrameStore(redis, keys);
});
afterAll(async () => {
  lanes.close();
  await queues.close();
  redis.disconnect();
});

function watch(live: string[], lost: string[], moves: string[] = []) {
  return new LostPools({
    directory: { lostPools: () => lost, isLive: (p) => live.includes(p) },
    redis,
    queues,
    fastLanes: lanes,
    store,
    log: silent,
    ttl: { STREAM_TTL_SECONDS: 600, SYNC_TTL_SECONDS: 60 },
    onMoved: (from, to) => moves.push(`${from}>${to}`),
  });
}

describe('LostPools', () => {
  it("moves a lost pool's waiting, delayed and fast-lane jobs to their first live later hop, naming the skipped ones", async () => {
    const waiting = job();
    const delayed = job({ attempts: [{ provider: 'x', model: 'y', code: '500', message: 'earlier' }] });
    const onLane = job();
    await queues.add(waiting);
    await queues.add(delayed, 10, { delay: 60_000 });
    await lanes.lane('openai').push(onLane);
    const moves: string[] = [];
    // gemini (hop 1) is lost too: they go to anthropic, hop 2.
    const w = watch(['anthropic'], ['openai', 'gemini'], moves);
    // The lane's entry is swept once its grace (30 ms) passed, then moved on like the others.
    await until(async () => ((await w.pass()) > 0 && moves.length === 3 ? true : undefined), {
      what: 'the three jobs moved',
    });
    expect(moves).toEqual(['openai>anthropic', 'openai>anthropic', 'openai>anthropic']);

    expect(await queues.get('openai').getJobCounts('wait', 'delayed', 'prioritized', 'active')).toEqual({
      wait: 0,
      delayed: 0,
      prioritized: 0,
      active: 0,
    });
    for (const j of [waiting, delayed, onLane]) {
      const moved = await queues.get('anthropic').getJob(`${j.id}-h2`);
      expect(moved?.data.hop, j.id).toBe(2);
      expect(
        moved?.data.attempts.map((a) => `${a.provider}:${a.code}`),
        j.id,
      ).toEqual([
        ...j.attempts.map((a) => `${a.provider}:${a.code}`),
        'openai:pool_lost',
        'gemini:pool_lost',
      ]);
      expect(moved?.data.attemptBase).toBeUndefined();
      // The copy at hop 0, should a worker of the lost pool hold it, may not run.
      expect(
        (await store.claim(j.id, 'w:0:1', 60_000, { account: 'a', model: 'm', created: 0 })).superseded,
      ).toBe(true);
    }
    expect(await redis.llen(keys.fast('openai', 'q'))).toBe(0);

    // A second pass (another ingress, or this one again) finds nothing left to move.
    expect(await w.pass()).toBe(0);
    await queues.get('anthropic').obliterate({ force: true });
  });

  it('leaves a job whose later hops are all lost (it runs when its pool comes back), and pools that are live', async () => {
    const stuck = job();
    await queues.add(stuck);
    const alone = job({ plan: [PLAN[1]!] });
    await queues.add(alone);
    expect(await watch([], ['openai', 'gemini']).pass()).toBe(0);
    expect((await queues.get('openai').getJob(stuck.id))?.data.hop).toBe(0);
    expect((await queues.get('gemini').getJob(alone.id))?.data.hop).toBe(0);
    // openai live again: nothing of it is touched.
    expect(await watch(['openai', 'anthropic'], ['gemini']).pass()).toBe(0);
    expect(await queues.get('openai').getJob(stuck.id)).toBeTruthy();
    await queues.get('openai').obliterate({ force: true });
    await queues.get('gemini').obliterate({ force: true });
  });

  it('looks past the jobs at the front that stay (no live later hop) to those behind them', async () => {
    const q = queues.get('openai');
    // Queued first, it is read last (a list is read from its newest job).
    const behind = job();
    await queues.add(behind);
    const stuck = Array.from({ length: 450 }, () => job({ plan: [PLAN[0]!] }));
    await q.addBulk(stuck.map((d) => ({ name: 'chat', data: d, opts: { jobId: d.id } })));
    const moves: string[] = [];
    expect(await watch(['gemini'], ['openai'], moves).pass()).toBe(1);
    expect(moves).toEqual(['openai>gemini']);
    expect(await queues.get('gemini').getJob(`${behind.id}-h1`)).toBeTruthy();
    expect(await q.getJobCounts('wait')).toEqual({ wait: 450 });
    await q.obliterate({ force: true });
    await queues.get('gemini').obliterate({ force: true });
  });

  it('moves a job a worker of the lost pool was running once its lock lapsed (the worker stopped), marking the run that stopped; not while it is held', async () => {
    const running = job();
    const unclaimed = job();
    await queues.add(running);
    await queues.add(unclaimed);
    // A worker takes them and then stops renewing their locks (manual fetching renews nothing): a
    // frozen worker. It had claimed the first (and called: a queued run claims before it calls), not
    // the second (it stopped before its claim: no call was made).
    const conn = createRedis(url, { blocking: true });
    const worker = new Worker<JobData>(keys.queue('openai'), null, {
      connection: conn,
      prefix: keys.prefix,
      lockDuration: 400,
      autorun: false,
    });
    try {
      expect((await worker.getNextJob('frozen-1'))?.id).toBe(running.id);
      expect((await worker.getNextJob('frozen-2'))?.id).toBe(unclaimed.id);
      await store.claim(running.id, 'w-frozen:0:1', 60_000, { account: 'a', model: 'm', created: 0 });
      const lockKey = queues.get('openai').toKey(`${unclaimed.id}:lock`);
      expect(await redis.exists(lockKey)).toBe(1);
      const moves: string[] = [];
      const w = watch(['gemini'], ['openai'], moves);
      // Held (their locks are there): they stay with their worker.
      expect(await w.pass()).toBe(0);
      expect(await queues.get('openai').getJobCounts('active')).toEqual({ active: 2 });
      await until(async () => ((await redis.exists(lockKey)) === 0 ? true : undefined), {
        what: 'the locks to lapse',
      });
      expect(await w.pass()).toBe(2);
      expect(moves).toEqual(['openai>gemini', 'openai>gemini']);
      const next = await queues.get('gemini').getJob(`${running.id}-h1`);
      expect(next?.data.hop).toBe(1);
      // The next hop bills the stopped run's call (hop 0, its first attempt) before calling again...
      expect(next?.data.lostRun).toBe('0:1');
      expect(next?.data.attempts.map((a) => `${a.provider}:${a.code}`)).toEqual(['openai:pool_lost']);
      // ...but not for the run that stopped before its claim: it made no call.
      expect((await queues.get('gemini').getJob(`${unclaimed.id}-h1`))?.data.lostRun).toBeUndefined();
      expect(await queues.get('openai').getJobCounts('active')).toEqual({ active: 0 });
      // The stopped worker's copy may not run again should it wake and claim.
      expect(
        (await store.claim(running.id, 'w:0:2', 60_000, { account: 'a', model: 'm', created: 0 })).superseded,
      ).toBe(true);
      expect(await w.pass()).toBe(0);
    } finally {
      await worker.close(true);
      conn.disconnect();
      await queues.get('openai').obliterate({ force: true });
      await queues.get('gemini').obliterate({ force: true });
    }
  });

  it('moves the stopped runs behind the first page of running jobs too', async () => {
    const q = queues.get('openai');
    // Taken first, they are at the end of the active list, behind 220 runs that cannot move.
    const movable = [job(), job()];
    const stuck = Array.from({ length: 220 }, () => job({ plan: [PLAN[0]!] }));
    for (const d of [...movable, ...stuck]) await queues.add(d);
    const conn = createRedis(url, { blocking: true });
    const worker = new Worker<JobData>(keys.queue('openai'), null, {
      connection: conn,
      prefix: keys.prefix,
      lockDuration: 300,
      autorun: false,
    });
    try {
      for (let i = 0; i < movable.length + stuck.length; i++)
        expect(await worker.getNextJob(`t${i}`)).toBeTruthy();
      const last = q.toKey(`${stuck.at(-1)!.id}:lock`);
      await until(async () => ((await redis.exists(last)) === 0 ? true : undefined), {
        what: 'the locks to lapse',
      });
      const moves: string[] = [];
      expect(await watch(['gemini'], ['openai'], moves).pass()).toBe(2);
      for (const d of movable) expect(await queues.get('gemini').getJob(`${d.id}-h1`), d.id).toBeTruthy();
      expect(await q.getJobCounts('active')).toEqual({ active: 220 });
    } finally {
      await worker.close(true);
      conn.disconnect();
      await q.obliterate({ force: true });
      await queues.get('gemini').obliterate({ force: true });
    }
  });
});
