import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { isJobEnvelope, JobData } from '@faregate/contracts/jobs';
import { testRedis } from '@faregate/testing/env';
import { chatJob } from '@faregate/testing/job';
import { FastLane, FastLanes } from './fast-lane.ts';
import { makeKeys } from './keys.ts';
import { createRedis } from './redis.ts';

let redis: Redis;
let blocking: Redis;
const { url, prefix } = testRedis();
const keys = makeKeys(prefix);
let n = 0;

const job = (): JobData => chatJob({ id: `req_fast${prefix}${++n}` });

beforeAll(() => {
  redis = createRedis(url);
  blocking = createRedis(url, { blocking: true });
});
afterAll(() => {
  redis.disconnect();
  blocking.disconnect();
});

describe('FastLane', () => {
  it('a pushed job is popped with its data and push time; a take makes the run ours, once', async () => {
    const lane = new FastLane(redis, keys, `p${++n}`, { graceMs: 60_000, leaseMs: 60_000 });
    const a = job();
    const b = job();
    const before = await lane.redisNow();
    await lane.push(a);
    await lane.push(b);
    const popped = await lane.pop(blocking, 10, 1);
    expect(popped).toHaveLength(2);
    const [first, second] = popped.map((e) => FastLane.parse(e));
    // Oldest first.
    expect(first?.data).toEqual(a);
    expect(second?.data.id).toBe(b.id);
    expect(first?.pushedAt).toBeGreaterThanOrEqual(before);
    expect(await lane.take([a.id, b.id])).toEqual([true, true]);
    expect(await lane.take([a.id])).toEqual([false]);
    // Nothing is due any more: a sweep finds nothing to move.
    expect(await lane.sweep()).toEqual([]);
    await lane.finish(a.id);
    await lane.finish(b.id);
    expect(await redis.hlen(keys.fast(lane.provider, 'data'))).toBe(0);
  });

  it('a take also forgets the runs that ended (one script); only the ids to take are answered', async () => {
    const lane = new FastLane(redis, keys, `p${++n}`, { graceMs: 60_000, leaseMs: 60_000 });
    const [a, b, c] = [job(), job(), job()];
    for (const j of [a, b, c]) await lane.push(j);
    expect(await lane.take([a.id, b.id])).toEqual([true, true]);
    // a and b ended; c is taken in the same call.
    expect(await lane.take([c.id], [a.id, b.id])).toEqual([true]);
    const k = (part: string) => keys.fast(lane.provider, part);
    expect(await redis.zrange(k('run'), '0', '-1')).toEqual([c.id]);
    expect(await redis.hkeys(k('data'))).toEqual([c.id]);
    // Forgetting alone (no take) answers nothing; forgetting twice is harmless.
    expect(await lane.take([], [c.id, a.id])).toEqual([]);
    expect(await redis.zcard(k('run'))).toBe(0);
    expect(await redis.hlen(k('data'))).toBe(0);
  });

  it('an adopted job (run by the process that hands it over) is recorded as a run, never on the list; a lapsed one is swept as a run', async () => {
    const lane = new FastLane(redis, keys, `p${++n}`, { graceMs: 60_000, leaseMs: 150 });
    const [a, b, c] = [job(), job(), job()];
    await lane.push(c);
    // One script: adopts a and b, takes c (pushed), and the adoptions lead the answer.
    expect(
      await lane.take(
        [c.id],
        [],
        [a, b].map((j) => ({ id: j.id, json: JSON.stringify(j) })),
      ),
    ).toEqual([true, true, true]);
    const k = (part: string) => keys.fast(lane.provider, part);
    expect(await redis.llen(lane.listKey)).toBe(1); // c's popped entry is the pop's business, not the take's
    expect(await redis.zcard(k('due'))).toBe(0);
    expect((await redis.zrange(k('run'), '0', '-1')).sort()).toEqual([a.id, b.id, c.id].sort());
    // a ends (forgotten with the next script); b's process dies: its lease lapses and the sweep
    // hands it over as a run that had called (the re-run bills that call).
    await lane.take([], [a.id, c.id]);
    const deadline = Date.now() + 5_000;
    let swept: Awaited<ReturnType<FastLane['sweep']>> = [];
    while (!swept.length && Date.now() < deadline) swept = await lane.sweep();
    expect(swept).toEqual([{ id: b.id, data: b, kind: 'run' }]);
    await lane.finish(b.id);
    expect(await redis.hlen(k('data'))).toBe(0);
    await redis.del(lane.listKey);
  });

  it('a job no worker took within the grace is swept (and can no longer be taken); its stale entry is dropped', async () => {
    const lane = new FastLane(redis, keys, `p${++n}`, { graceMs: 50, leaseMs: 60_000 });
    const a = job();
    await lane.push(a);
    let swept: Awaited<ReturnType<FastLane['sweep']>> = [];
    const deadline = Date.now() + 5_000;
    while (!swept.length && Date.now() < deadline) swept = await lane.sweep();
    expect(swept).toEqual([{ id: a.id, data: a, kind: 'due' }]);
    expect(await lane.take([a.id])).toEqual([false]);
    expect(await redis.llen(lane.listKey)).toBe(0);
    // Until the sweeper says the job is queued elsewhere, its hand-over is leased, not forgotten.
    expect(await redis.zscore(keys.fast(lane.provider, 'moving'), a.id)).not.toBeNull();
    await lane.finish(a.id);
    expect(await redis.zcard(keys.fast(lane.provider, 'moving'))).toBe(0);
  });

  it('a run whose lease lapsed (its worker died) is swept; a renewed one is not', async () => {
    const lane = new FastLane(redis, keys, `p${++n}`, { graceMs: 60_000, leaseMs: 150 });
    const dead = job();
    const alive = job();
    await lane.push(dead);
    await lane.push(alive);
    expect(await lane.take([dead.id, alive.id])).toEqual([true, true]);
    const deadline = Date.now() + 5_000;
    let swept: Awaited<ReturnType<FastLane['sweep']>> = [];
    while (!swept.length && Date.now() < deadline) {
      await lane.renew([alive.id]);
      swept = await lane.sweep();
    }
    expect(swept.map((s) => [s.id, s.kind])).toEqual([[dead.id, 'run']]);
  });

  it('a sweeper that died mid hand-over leaves the job to the next sweep', async () => {
    const lane = new FastLane(redis, keys, `p${++n}`, { graceMs: 10, leaseMs: 60_000 });
    const a = job();
    await lane.push(a);
    const deadline = Date.now() + 5_000;
    let first: Awaited<ReturnType<FastLane['sweep']>> = [];
    while (!first.length && Date.now() < deadline) first = await lane.sweep(100, 50);
    expect(first[0]?.kind).toBe('due');
    // No finish: the hand-over lease (50 ms) lapses and the job comes back.
    let again: Awaited<ReturnType<FastLane['sweep']>> = [];
    while (!again.length && Date.now() < deadline) again = await lane.sweep(100, 50);
    expect(again).toEqual([{ id: a.id, data: a, kind: 'moving' }]);
    await lane.finish(a.id);
  });

  it('the ingress sees a pool as having the lane only while a worker advertises it', async () => {
    const provider = `p${++n}`;
    const lanes = new FastLanes(redis, keys, { graceMs: 300, leaseMs: 1_000 }, 60_000);
    try {
      expect(lanes.available(provider)).toBeUndefined();
      await lanes.refresh();
      expect(lanes.available(provider)).toBeUndefined();
      await new FastLane(redis, keys, provider).advertise(200);
      await lanes.refresh();
      expect(lanes.available(provider)?.provider).toBe(provider);
      await redis.del(lanes.lane(provider).aliveKey);
      await lanes.refresh();
      expect(lanes.available(provider)).toBeUndefined();
    } finally {
      lanes.close();
    }
  });
});

describe('isJobEnvelope', () => {
  it('takes what an ingress writes (a JobData, chat or embeddings) and refuses other versions and shapes', () => {
    const chat = JobData.parse(job());
    expect(isJobEnvelope(chat)).toBe(true);
    expect(isJobEnvelope(JSON.parse(JSON.stringify(chat)))).toBe(true);
    const embeddings = JobData.parse({
      ...job(),
      op: 'embeddings',
      request: { model: 'text-embedding-3-small', input: 'hi' },
    });
    expect(isJobEnvelope(embeddings)).toBe(true);
    const bad: unknown[] = [
      null,
      'req_x',
      { ...chat, v: 2 },
      { ...chat, id: 7 },
      { ...chat, op: 'images' },
      { ...chat, request: { model: 'm' } },
      { ...chat, request: undefined },
      { ...chat, plan: [] },
      { ...chat, plan: [{ provider: 'openai' }] },
      { ...chat, hop: 0.5 },
      { ...chat, deltas: 'no' },
      { ...chat, deadline: undefined },
      { ...chat, attempts: undefined },
    ];
    for (const b of bad) expect(isJobEnvelope(b), JSON.stringify(b)).toBe(false);
  });

  it('an entry that is not a job is unreadable', () => {
    expect(FastLane.read(`123 ${JSON.stringify({ ...job(), v: 2 })}`).ok).toBe(false);
    expect(FastLane.read('123 {').ok).toBe(false);
    const r = FastLane.read(`123 ${JSON.stringify(job())}`);
    expect(r.ok && r.pushedAt).toBe(123);
  });
});
