import { Queue, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeKeys } from '@faregate/queue/keys';
import { createRedis } from '@faregate/queue/redis';
import { testRedis, until } from '@faregate/testing/env';
import { InFlightGate } from './in-flight.ts';

const { url, prefix } = testRedis();
const keys = makeKeys(prefix);
let redis: Redis;
let blocking: Redis;
let n = 0;
const pool = () => `inflight${++n}`;
beforeAll(() => {
  redis = createRedis(url);
  blocking = createRedis(url, { blocking: true });
});
afterAll(() => {
  redis.disconnect();
  blocking.disconnect();
});

const concurrency = async (p: string) => redis.hget(keys.bull(p, 'meta'), 'concurrency');

describe('the pool max-in-flight over lane runs and BullMQ runs', () => {
  it('lane runs and BullMQ active jobs together never exceed the limit; a lane run ending wakes a waiting BullMQ job', async () => {
    const p = pool();
    const gate = new InFlightGate(redis, keys, p, 30_000);
    await gate.setLimit(3);
    expect(await concurrency(p)).toBe('3');
    expect(await gate.acquire('lane-a')).toBe(true);
    expect(await gate.acquire('lane-b')).toBe(true);
    // BullMQ gets what the lane runs leave.
    expect(await concurrency(p)).toBe('1');
    const queue = new Queue(keys.queue(p), { connection: redis, prefix });
    let active = 0;
    let peak = 0;
    const started: string[] = [];
    const releases: Array<() => void> = [];
    const worker = new Worker(
      keys.queue(p),
      async (job) => {
        active++;
        peak = Math.max(peak, active);
        started.push(job.name);
        await new Promise<void>((r) => releases.push(r));
        active--;
      },
      { connection: blocking, prefix, concurrency: 5 },
    );
    try {
      await queue.addBulk(['j1', 'j2', 'j3'].map((name) => ({ name, data: {} })));
      await until(async () => started.length === 1, { what: 'one BullMQ job running' });
      // Full: 2 lane runs + 1 BullMQ job. Another lane run is refused.
      expect(await gate.acquire('lane-c')).toBe(false);
      await until(async () => (await queue.getWaitingCount()) === 2, { what: 'the other two waiting' });
      expect(started).toHaveLength(1);
      // A lane run ends: its room goes to a waiting BullMQ job at once (BullMQ is woken).
      await gate.release('lane-a');
      await until(async () => started.length === 2, {
        timeoutMs: 2_000,
        what: 'a second BullMQ job started',
      });
      expect(await gate.acquire('lane-d')).toBe(false);
      for (const r of releases.splice(0)) r();
      await gate.release('lane-b');
      await until(async () => started.length === 3, { what: 'the third BullMQ job' });
      for (const r of releases.splice(0)) r();
      await until(async () => (await queue.getActiveCount()) === 0, { what: 'all done' });
      expect(peak).toBeLessThanOrEqual(2);
    } finally {
      for (const r of releases) r();
      await worker.close();
      await queue.close();
    }
  });

  it('a killed process stops counting when its lease lapses; renewal keeps a live one counted', async () => {
    const p = pool();
    const dead = new InFlightGate(redis, keys, p, 300);
    const live = new InFlightGate(redis, keys, p, 300);
    await dead.setLimit(2);
    live.limit = 2;
    expect(await dead.acquire('dead-1')).toBe(true);
    expect(await live.acquire('live-1')).toBe(true);
    expect(await live.acquire('live-2')).toBe(false);
    expect(await concurrency(p)).toBe('0');
    // `dead` never renews nor releases (kill -9); `live` renews its run.
    await until(
      async () => {
        await live.renew();
        return (await concurrency(p)) === '1';
      },
      { timeoutMs: 2_000, what: "the dead process's run lapsing" },
    );
    expect(await redis.zscore(keys.laneInFlight(p), 'live-1')).not.toBeNull();
    expect(await live.acquire('live-2')).toBe(true);
    expect(await live.acquire('live-3')).toBe(false);
  });

  it('a changed limit applies to BullMQ at once; no limit: nothing counted, no BullMQ global concurrency', async () => {
    const p = pool();
    const gate = new InFlightGate(redis, keys, p, 30_000);
    await gate.setLimit(4);
    expect(await gate.acquire('a')).toBe(true);
    await gate.setLimit(10);
    expect(await concurrency(p)).toBe('9');
    await gate.setLimit(undefined);
    expect(await concurrency(p)).toBeNull();
    expect(await gate.acquire('b')).toBe(true);
    expect(await redis.zscore(keys.laneInFlight(p), 'b')).toBeNull();
    await gate.release('a');
    expect(await redis.exists(keys.laneInFlight(p))).toBe(0);
  });
});
