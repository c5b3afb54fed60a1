import type { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { isTerminalRaw } from '@faregate/contracts/frames';
import type { ChatJobData, JobData } from '@faregate/contracts/jobs';
import { UsageEvent } from '@faregate/contracts/usage';
import { type FakeProvider, startFakeProvider } from '@faregate/fake-provider/server';
import { callProvider } from '@faregate/providers/call';
import { FastLane } from '@faregate/queue/fast-lane';
import { makeKeys, usagePartition } from '@faregate/queue/keys';
import { ProviderQueues } from '@faregate/queue/queues';
import { createRedis } from '@faregate/queue/redis';
import { testRedis, until } from '@faregate/testing/env';
import { chatJob } from '@faregate/testing/job';
import { runAttempt } from './attempt.ts';
import { WorkerConfig } from './config.ts';
import { testWorkerDeps } from './test-deps.ts';
import type { EffectiveLimits } from './deps.ts';
import { createQueueIntake } from './intake/bullmq.ts';
import { LaneIntake } from './intake/lane.ts';
import { Runner } from './runner.ts';

/**
 * One worker process of a pool with an RPM limit, in process: both intakes (fast lane and BullMQ)
 * feeding one runner, the real attempt, limiter, frame store and lane scripts against real Redis,
 * and the fake provider counting the calls.
 */

const { url, prefix } = testRedis();
let fake: FakeProvider;
let redis: Redis;
const closers: Array<() => Promise<unknown> | unknown> = [];
let n = 0;

beforeAll(async () => {
  fake = await startFakeProvider({ port: 0, host: '127.0.0.1' });
  redis = createRedis(url);
});
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
});
afterAll(async () => {
  redis.disconnect();
  await fake.close();
});

const chatCalls = () => fake.calls().filter((c) => c.model !== null && c.path.includes('chat'));

const job = (over: Partial<ChatJobData> = {}): JobData =>
  chatJob({
    id: `req_lanelim${prefix}${++n}`,
    // A caller waits on it (an interactive request): what the lane carries.
    replyTo: `${prefix}:reply:test`,
    ...over,
  });

/**
 * A pool of its own (own key prefix): limits in force, a lane with `graceMs`, a BullMQ intake that
 * runs once `startQueue` is called. `call` wraps the real provider call.
 */
function pool(o: {
  limits: EffectiveLimits;
  graceMs: number;
  call?: typeof callProvider;
  windowMs?: number;
}) {
  const p = `${prefix}p${++n}`;
  const keys = makeKeys(p);
  const config = WorkerConfig.parse({
    WORKER_PROVIDER: 'openai',
    REDIS_PREFIX: p,
    WORKER_CONCURRENCY: '4',
    FAST_LANE_GRACE_MS: String(o.graceMs),
  });
  const queues = new ProviderQueues(redis, keys);
  const deps = testWorkerDeps({
    config,
    redis,
    keys,
    queues,
    call: o.call ?? callProvider,
    providerUrl: fake.url,
    limits: o.limits,
    limiter: { rpm: o.limits.rpm, tpm: o.limits.tpm, windowMs: o.windowMs ?? 60_000, guardMs: 0 },
  });
  const workerId = `w-${p}`;
  const runner = new Runner({
    config,
    limits: deps.limits,
    metrics: deps.metrics,
    limiter: deps.limiter,
    attempt: (input) => runAttempt(deps, input),
    workerId,
  });
  const lane = new FastLane(redis, keys, 'openai', { graceMs: o.graceMs, leaseMs: 30_000 });
  const laneIntake = new LaneIntake(deps, runner, lane, createRedis(url, { blocking: true }));
  const bull = createRedis(url, { blocking: true });
  const queueIntake = createQueueIntake(deps, runner, bull, workerId);
  closers.push(async () => {
    await laneIntake.stop(5_000);
    await queueIntake.close();
    bull.disconnect();
    await queues.close();
  });
  const fastLane = async (event: string) =>
    (await deps.metrics.fastLane.get()).values.find((v) => v.labels.event === event)?.value ?? 0;
  const terminal = (id: string) =>
    until(
      async () => {
        const last = await deps.store.last(id);
        return last && isTerminalRaw(last) ? last : undefined;
      },
      { what: `a terminal frame of ${id}` },
    );
  return {
    deps,
    keys,
    runner,
    lane,
    laneIntake,
    startQueue: () => void queueIntake.run(),
    queued: async (id: string) => (await deps.queue.getJob(id)) !== undefined,
    fastLane,
    terminal,
  };
}

describe('fast lane under RPM/TPM limits', () => {
  it('the lane runs limited pools', () => {
    const t = pool({ limits: { rpm: 100, tpm: 100_000, attempts: 3 }, graceMs: 300 });
    expect(t.runner.laneAllowed()).toBe(true);
  });

  it('a limited lane job admitted at once runs on the lane: one call, never queued on BullMQ', async () => {
    const t = pool({ limits: { rpm: 100, attempts: 3 }, graceMs: 2_000 });
    await t.laneIntake.start();
    t.startQueue();
    const before = chatCalls().length;
    const data = job();
    await t.lane.push(data);
    expect(await t.terminal(data.id)).toContain('"type":"done"');
    expect(chatCalls().length - before).toBe(1);
    expect(await t.fastLane('run')).toBe(1);
    expect(await t.fastLane('lost')).toBe(0);
    expect(await t.queued(data.id)).toBe(false);
  });

  it('the entries of one pop are taken by one take script, after their calls', async () => {
    let calls = 0;
    const call: typeof callProvider = (args) => {
      calls++;
      return callProvider(args);
    };
    const t = pool({ limits: { rpm: 1_000, attempts: 3 }, graceMs: 5_000, call });
    const pops: number[] = [];
    const pop = t.lane.pop.bind(t.lane);
    t.lane.pop = async (...args) => {
      const r = await pop(...args);
      if (r.length) pops.push(r.length);
      return r;
    };
    const takes: { ids: string[]; callsBefore: number }[] = [];
    const take = t.lane.take.bind(t.lane);
    t.lane.take = (ids, ended) => {
      // A script that only forgets ended runs (`finish`, 20 ms after the runs ended) takes nothing.
      if (ids.length) takes.push({ ids, callsBefore: calls });
      return take(ids, ended);
    };
    // Queued before the intake starts: its first pop takes all three (three free lane slots of four).
    const jobs = [job(), job(), job()];
    for (const j of jobs) await t.lane.push(j);
    await t.laneIntake.start();
    for (const j of jobs) expect(await t.terminal(j.id)).toContain('"type":"done"');
    expect(pops[0]).toBe(3);
    expect(takes.length).toBe(pops.length);
    expect(takes[0]?.ids.toSorted()).toEqual(jobs.map((j) => j.id).toSorted());
    // Taken once all three calls were made, not in front of any of them.
    expect(takes[0]?.callsBefore).toBe(3);
    expect(await t.fastLane('lost')).toBe(0);
  });

  it('a lane job whose admission outlasts the grace is swept to BullMQ and calls the provider once, not once per intake', async () => {
    // The call's abort (a lane run that lost its take) reaches the request only after the fake saw
    // it, as on any real network where the request is on its way before the take's answer is back.
    // Locally the abort could beat the request to the fake and hide a second call.
    const call: typeof callProvider = (args) => {
      const seen = chatCalls().length;
      const inner = new AbortController();
      const passOn = () =>
        void until(() => chatCalls().length > seen, { timeoutMs: 5_000, what: 'the call at the fake' })
          .catch(() => {})
          .then(() => inner.abort(args.signal?.reason));
      if (args.signal?.aborted) passOn();
      else args.signal?.addEventListener('abort', passOn, { once: true });
      return callProvider({ ...args, signal: inner.signal });
    };
    // A grace long enough that the lane pops the entry fresh (within half of it) on a loaded machine.
    const t = pool({ limits: { rpm: 100, attempts: 3 }, graceMs: 1_000, call });
    const data = job();
    const before = chatCalls().length;
    // The lane's admission is slow (the shared limiter's round trip on a loaded process): it comes
    // through only after the grace, once a sweep queued the job on BullMQ and BullMQ's run of it
    // called the provider.
    const acquire = t.deps.limiter.acquire.bind(t.deps.limiter);
    let admitting!: () => void;
    const laneAdmitting = new Promise<void>((r) => {
      admitting = r;
    });
    let first = true;
    t.deps.limiter.acquire = async (tokens) => {
      if (first) {
        first = false;
        admitting();
        await until(() => chatCalls().length > before, {
          timeoutMs: 5_000,
          what: "BullMQ's run to call the provider",
        });
      }
      return acquire(tokens);
    };
    await t.laneIntake.start();
    t.startQueue();
    await t.lane.push(data);
    await laneAdmitting;
    expect(await t.terminal(data.id)).toContain('"type":"done"');
    // The lane's run ends: it lost the job to the sweep.
    expect(await t.laneIntake.stop(10_000)).toBe(true);
    expect(await t.fastLane('run')).toBe(1);
    expect(await t.fastLane('lost')).toBe(1);
    expect(await t.fastLane('queued_due')).toBe(1);
    expect(chatCalls().length - before).toBe(1);
  });

  it('a lane run whose take loses after its call reads the answer and bills what the provider reported', async () => {
    // The take comes back lost (a stalled process: the sweep queued the job on BullMQ first) while
    // the call's answer is still on its way. The provider bills that call all the same.
    let takeLost!: () => void;
    const lostTake = new Promise<void>((r) => {
      takeLost = r;
    });
    const call: typeof callProvider = async (args) => {
      const res = await callProvider(args);
      await lostTake;
      // Past the microtasks in which the intake handles the take's answer.
      await new Promise((r) => setImmediate(r));
      // What an aborted request does with an answer not read yet.
      if (args.signal?.aborted) throw args.signal.reason;
      return res;
    };
    const t = pool({ limits: { rpm: 1_000, attempts: 3 }, graceMs: 300, call });
    const take = t.lane.take.bind(t.lane);
    t.lane.take = async (ids, ended) => {
      // Only a take of the run loses; a script that only forgets ended runs (`finish`) goes through.
      if (!ids.length) return take(ids, ended);
      await until(() => t.queued(ids[0] ?? ''), { what: 'the sweep to queue the job on BullMQ' });
      const r = await take(ids, ended);
      takeLost();
      return r;
    };
    const data = job();
    const before = chatCalls().length;
    await t.laneIntake.start();
    t.startQueue();
    await t.lane.push(data);
    expect(await t.terminal(data.id)).toContain('"type":"done"');
    expect(await t.laneIntake.stop(10_000)).toBe(true);
    expect(await t.fastLane('lost')).toBe(1);
    // Every call the provider answered is billed at its own count: the lane run's (one usage event
    // of its own, or the job's if its write came first) and, if the BullMQ run called too, that one.
    const calls = chatCalls()
      .slice(before)
      .filter((c) => c.status === 200);
    expect(calls.length).toBeGreaterThanOrEqual(1);
    const events = await until(
      async () => {
        const entries = await redis.xrange(t.keys.usage(usagePartition(data.id)), '-', '+');
        const mine = entries
          .map(([, f]) => UsageEvent.parse(JSON.parse(f[1] ?? '')))
          .filter((e) => e.requestId === data.id);
        return mine.length >= calls.length ? mine : undefined;
      },
      { what: 'a usage event per call' },
    );
    expect(events.map((e) => `${e.inputTokens}:${e.outputTokens}`).sort()).toEqual(
      calls.map((c) => `${c.promptTokens}:${c.completionTokens}`).sort(),
    );
    expect(events.every((e) => !e.estimated)).toBe(true);
    expect(events.filter((e) => e.final)).toHaveLength(1);
  });

  it('a lane job admitted after half the grace but before the sweep takes the job before its call, and still runs on the lane', async () => {
    const graceMs = 2_000;
    let called = false;
    const call: typeof callProvider = (args) => {
      called = true;
      return callProvider(args);
    };
    const t = pool({ limits: { rpm: 100, attempts: 3 }, graceMs, call });
    let takenBeforeCall: boolean | undefined;
    const take = t.lane.take.bind(t.lane);
    t.lane.take = (ids, ended) => {
      if (ids.length) takenBeforeCall ??= !called;
      return take(ids, ended);
    };
    const data = job();
    const before = chatCalls().length;
    const acquire = t.deps.limiter.acquire.bind(t.deps.limiter);
    let first = true;
    t.deps.limiter.acquire = async (tokens) => {
      if (first) {
        first = false;
        // Slow, but not slow enough to be swept: well past half the grace, well before its end
        // (Redis's clock, as entries are stamped; the job is not taken yet, so still `due`).
        const due = Number(await redis.zscore(t.keys.fast('openai', 'due'), data.id));
        await until(async () => (await t.lane.redisNow()) > due - graceMs / 2 + 200, {
          what: 'half the grace to pass',
        });
      }
      return acquire(tokens);
    };
    await t.laneIntake.start();
    t.startQueue();
    await t.lane.push(data);
    expect(await t.terminal(data.id)).toContain('"type":"done"');
    expect(await t.laneIntake.stop(10_000)).toBe(true);
    expect(takenBeforeCall).toBe(true);
    expect(chatCalls().length - before).toBe(1);
    expect(await t.fastLane('lost')).toBe(0);
    expect(await t.fastLane('queued_due')).toBe(0);
  });

  it('a lane job over the RPM limit goes to BullMQ to wait for the window, without using an attempt, and is called once', async () => {
    const windowMs = 1_000;
    const t = pool({ limits: { rpm: 1, attempts: 3 }, graceMs: 2_000, windowMs });
    await t.laneIntake.start();
    t.startQueue();
    const before = chatCalls().length;
    const a = job();
    const b = job();
    await t.lane.push(a);
    expect(await t.terminal(a.id)).toContain('"type":"done"');
    await t.lane.push(b);
    expect(await t.terminal(b.id)).toContain('"type":"done"');
    const calls = chatCalls().slice(before);
    expect(calls).toHaveLength(2);
    // The second waited for the window rather than going out at once (the limiter paces admissions;
    // arrival at the fake jitters on a loaded machine, and this pool has no guard for it).
    expect(calls[1]!.at - calls[0]!.at).toBeGreaterThanOrEqual(windowMs / 2);
    expect(await t.fastLane('run')).toBe(2);
    expect(await t.fastLane('handed_over')).toBe(1);
    expect(await t.fastLane('lost')).toBe(0);
  });
});
