import type { ChatJobData, JobData } from '@faregate/contracts/jobs';
import { chatJob } from '@faregate/testing/job';
import { describe, expect, it } from 'vitest';
import type { AttemptInput, AttemptOutcome } from './attempt.ts';
import { WorkerConfig } from './config.ts';
import type { EffectiveLimits } from './deps.ts';
import type { Admission } from './limits/limiter.ts';
import { createWorkerMetrics } from './metrics.ts';
import { type Pickup, Runner, type RunnerDeps } from './runner.ts';

const config = WorkerConfig.parse({ WORKER_PROVIDER: 'openai', WORKER_CONCURRENCY: '4' });
const job = (over: Partial<ChatJobData> = {}): JobData => chatJob({ id: 'req_runner', ...over });
const lane = (data: JobData, over: Partial<Pickup> = {}): Pickup => ({
  data,
  via: 'lane',
  starts: 1,
  made: 0,
  stalled: false,
  speculative: true,
  ...over,
});

/** A runner with a scripted limiter and an attempt that records its input (and can be held open). */
function setup(
  limits: EffectiveLimits,
  admit: { local?: Admission; shared?: Admission } = {},
  inFlight?: RunnerDeps['inFlight'],
) {
  const inputs: AttemptInput[] = [];
  const calls = { local: 0, shared: 0 };
  let release: (o: AttemptOutcome) => void = () => {};
  let hold = false;
  const metrics = createWorkerMetrics('openai');
  const deps: RunnerDeps = {
    config,
    limits,
    metrics,
    workerId: 'w1',
    ...(inFlight ? { inFlight } : {}),
    limiter: {
      admitLocal: () => {
        calls.local++;
        return admit.local ?? { ok: true, keyIndex: 1, bucket: 0, tokens: 0, at: 0 };
      },
      acquire: async () => {
        calls.shared++;
        return admit.shared ?? { ok: true, keyIndex: 2, bucket: 7, tokens: 5, at: 0 };
      },
    },
    attempt: (input) => {
      inputs.push(input);
      input.onCalling?.();
      return hold ? new Promise((r) => (release = r)) : Promise.resolve({ status: 'completed' });
    },
  };
  return {
    runner: new Runner(deps),
    inputs,
    calls,
    metrics,
    holdNext: () => (hold = true),
    release: (o: AttemptOutcome = { status: 'completed' }) => release(o),
  };
}

describe('runner', () => {
  it('a learned pause holds a lane job too (no shared limit): it waits without an attempt, its take still goes out', async () => {
    const t = setup({ attempts: 3 }, { local: { ok: false, waitMs: 700 } });
    let calling = 0;
    const out = await t.runner.run(lane(job(), { onCalling: () => calling++ }));
    expect(out).toEqual({ status: 'wait', waitMs: 700 });
    expect(t.inputs).toHaveLength(0);
    expect(calling).toBe(1);
    expect(t.calls).toEqual({ local: 1, shared: 0 });
  });

  it('with RPM/TPM the shared limiter admits a lane job and a queued job alike, and picks the key', async () => {
    const t = setup({ attempts: 3, rpm: 10 });
    await t.runner.run(lane(job()));
    await t.runner.run({ ...lane(job()), via: 'queue', speculative: false });
    expect(t.calls).toEqual({ local: 0, shared: 2 });
    expect(t.inputs.map((i) => i.keyIndex)).toEqual([2, 2]);
    expect(t.inputs[0]?.admission).toMatchObject({ bucket: 7, tokens: 5 });
  });

  it('without shared limits, no limiter round trip: the local pause view picks the key, no admission to settle', async () => {
    const t = setup({ attempts: 3 });
    await t.runner.run(lane(job()));
    expect(t.calls).toEqual({ local: 1, shared: 0 });
    expect(t.inputs[0]).toMatchObject({ keyIndex: 1, admission: undefined });
  });

  it('a limit that outlasts the request ends the attempt with rate_limit_exceeded instead of waiting', async () => {
    const t = setup({ attempts: 3, rpm: 1 }, { shared: { ok: false, waitMs: 120_000 } });
    await t.runner.run(lane(job()));
    expect(t.inputs[0]?.forcedError?.code).toBe('rate_limit_exceeded');
  });

  it("a pause that outlasts an interactive request's patience is not waited: rate_limit_exceeded at once, carrying the wait", async () => {
    const t = setup({ attempts: 3 }, { local: { ok: false, waitMs: 20_000 } });
    await t.runner.run(lane(job({ patienceMs: 5_000 })));
    expect(t.inputs[0]?.forcedError).toMatchObject({ code: 'rate_limit_exceeded', retryAfterMs: 20_000 });
    // Within the patience it waits, as a request without one (an async job) waits within its deadline.
    const within = setup({ attempts: 3 }, { local: { ok: false, waitMs: 700 } });
    expect(await within.runner.run(lane(job({ patienceMs: 5_000 })))).toEqual({
      status: 'wait',
      waitMs: 700,
    });
    const noPatience = setup({ attempts: 3, rpm: 10 }, { shared: { ok: false, waitMs: 20_000 } });
    expect(await noPatience.runner.run(lane(job()))).toEqual({ status: 'wait', waitMs: 20_000 });
  });

  it('numbers attempts across intakes: lane attempts before the job was queued count first', async () => {
    const t = setup({ attempts: 3 });
    await t.runner.run(lane(job()));
    await t.runner.run({ ...lane(job({ attemptBase: 1 })), via: 'queue', starts: 1, speculative: false });
    await t.runner.run({ ...lane(job({ attemptBase: 1 })), via: 'queue', starts: 2, made: 1 });
    expect(t.inputs.map((i) => [i.attempt, i.restart, i.canRetry])).toEqual([
      [1, false, true],
      [2, true, true],
      [3, true, false],
    ]);
  });

  it('counts slots and in-flight runs over both intakes; BullMQ keeps one slot the lane never takes', async () => {
    const t = setup({ attempts: 3 });
    expect(t.runner.laneFree()).toBe(3);
    t.holdNext();
    const seen: number[] = [];
    t.runner.onChange(() => seen.push(t.runner.busy));
    const a = t.runner.run(lane(job()));
    await Promise.resolve();
    expect(t.runner.busy).toBe(1);
    expect(t.runner.laneBusy).toBe(1);
    expect(t.runner.laneFree()).toBe(2);
    expect((await t.metrics.inFlight.get()).values[0]?.value).toBe(1);
    t.release();
    await a;
    expect(t.runner.busy).toBe(0);
    expect(seen).toEqual([1, 0]);
    expect((await t.metrics.inFlight.get()).values[0]?.value).toBe(0);
  });

  it('the lane runs under every limit: a max-in-flight needs the in-flight gate', () => {
    const gate = { acquire: async () => true, release: async () => {} };
    expect(setup({ attempts: 3, rpm: 5, tpm: 100 }).runner.laneAllowed()).toBe(true);
    expect(setup({ attempts: 3, maxInFlight: 2 }).runner.laneAllowed()).toBe(false);
    expect(setup({ attempts: 3, maxInFlight: 2 }, {}, gate).runner.laneAllowed()).toBe(true);
    expect(setup({ attempts: 3 }).runner.laneAllowed()).toBe(true);
  });

  it('a lane run under a max-in-flight takes room from the gate and gives it back; a full pool sends it to the queue untouched; a queued run leaves the gate to BullMQ', async () => {
    const taken: string[] = [];
    const released: string[] = [];
    let room = 1;
    const gate = {
      acquire: async (id: string) => {
        if (room <= 0) return false;
        room--;
        taken.push(id);
        return true;
      },
      release: async (id: string) => {
        room++;
        released.push(id);
      },
    };
    const t = setup({ attempts: 3, maxInFlight: 1 }, {}, gate);
    expect(await t.runner.run(lane(job({ id: 'req_a' })))).toEqual({ status: 'completed' });
    expect(taken).toEqual(['w1:req_a']);
    expect(released).toEqual(['w1:req_a']);
    room = 0;
    let called = false;
    const full = await t.runner.run(lane(job({ id: 'req_b' }), { onCalling: () => (called = true) }));
    expect(full).toEqual({ status: 'wait', waitMs: 0 });
    expect(called).toBe(true);
    expect(t.inputs.map((i) => i.data.id)).toEqual(['req_a']);
    expect(released).toEqual(['w1:req_a']);
    await t.runner.run(lane(job({ id: 'req_c' }), { via: 'queue', speculative: false }));
    expect(t.inputs.map((i) => i.data.id)).toEqual(['req_a', 'req_c']);
    expect(taken).toEqual(['w1:req_a']);
  });
});
