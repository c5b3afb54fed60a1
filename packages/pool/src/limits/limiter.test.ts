import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { testRedis, until } from '@faregate/testing/env';
import { makeKeys } from '@faregate/queue/keys';
import { createRedis } from '@faregate/queue/redis';
import { AUTO_LEASE_MS, leaseMsOf, leaseSize, PoolLimiter } from './limiter.ts';

const { url, prefix } = testRedis();
const keys = makeKeys(prefix);
let redis: Redis;
let n = 0;
const pool = () => `lim${++n}`;
beforeAll(() => {
  redis = createRedis(url);
});
afterAll(() => redis.disconnect());

describe('PoolLimiter', () => {
  it('admits up to the RPM across processes sharing the window, then says how long to wait', async () => {
    const p = pool();
    const settings = { rpm: 3, windowMs: 10_000, guardMs: 0 };
    const a = new PoolLimiter(redis, keys, p, 1, settings);
    const b = new PoolLimiter(redis, keys, p, 1, settings);
    const r = [await a.acquire(0), await b.acquire(0), await a.acquire(0), await b.acquire(0)];
    expect(r.map((x) => x.ok)).toEqual([true, true, true, false]);
    const last = r[3];
    if (last && !last.ok) {
      expect(last.waitMs).toBeGreaterThan(0);
      expect(last.waitMs).toBeLessThanOrEqual(10_000 + 10_000 / 60);
    }
  });

  it('any L + 1 admissions across processes span at least the window plus its guard', async () => {
    // The property the scale-out test relies on: the provider can see L + 1 calls within the window
    // only if two of them moved apart by more than the guard after admission. Real time, a short
    // window: each admission's call is bracketed by this process's clock before and after it, and
    // for any L + 1 admissions the last one's end is at least window + guard after the first's start.
    const p = pool();
    const L = 5;
    const settings = { rpm: L, windowMs: 300, guardMs: 100 };
    const procs = [0, 1, 2].map(() => new PoolLimiter(redis, keys, p, 1, { ...settings }));
    const admitted: { start: number; end: number }[] = [];
    const until = Date.now() + 1_500;
    await Promise.all(
      procs.map(async (l, k) => {
        let seed = 7 + k;
        while (Date.now() < until) {
          const start = Date.now();
          const a = await l.acquire(0);
          if (a.ok) admitted.push({ start, end: Date.now() });
          seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
          // A caller's pace, 0-9 ms between tries (load generation, not a wait for async work).
          await new Promise((r) => setTimeout(r, seed % 10));
        }
      }),
    );
    admitted.sort((a, b) => a.end - b.end);
    // Used, not starved: about L per window plus guard.
    expect(admitted.length).toBeGreaterThan(3 * L);
    for (let i = L; i < admitted.length; i++)
      expect((admitted[i]?.end ?? 0) - (admitted[i - L]?.start ?? 0)).toBeGreaterThanOrEqual(400);
  });

  it("a process whose clock is behind (read before a stall, or another host's) admits nothing past the limit", async () => {
    // The window goes by Redis's clock. By the caller's, a process 2 s behind counted the window
    // up to a bucket older than the slots the other process had just taken, and admitted L more.
    const p = pool();
    const settings = { rpm: 3, windowMs: 10_000, guardMs: 200 };
    const now = new PoolLimiter(redis, keys, p, 1, { ...settings });
    const behind = new PoolLimiter(redis, keys, p, 1, { ...settings });
    const first = [await now.acquire(0), await now.acquire(0), await now.acquire(0)];
    expect(first.map((a) => a.ok)).toEqual([true, true, true]);
    const real = Date.now.bind(Date);
    const clock = vi.spyOn(Date, 'now').mockImplementation(() => real() - 2_000);
    try {
      const late = [await behind.acquire(0), await behind.acquire(0)];
      expect(late.map((a) => a.ok)).toEqual([false, false]);
    } finally {
      clock.mockRestore();
    }
  });

  it('touch moves a slot by Redis clock: a slot re-dated by a process whose clock is ahead still counts', async () => {
    const p = pool();
    const settings = { rpm: 2, windowMs: 10_000, guardMs: 200 };
    const ahead = new PoolLimiter(redis, keys, p, 1, { ...settings });
    const other = new PoolLimiter(redis, keys, p, 1, { ...settings });
    const a = await ahead.acquire(0);
    expect(a.ok).toBe(true);
    const real = Date.now.bind(Date);
    const clock = vi.spyOn(Date, 'now').mockImplementation(() => real() + 5_000);
    try {
      if (a.ok) await ahead.touch(a);
    } finally {
      clock.mockRestore();
    }
    // One slot counted, wherever touch put it: one more is admitted, then none.
    expect((await other.acquire(0)).ok).toBe(true);
    expect((await other.acquire(0)).ok).toBe(false);
  });

  it('rotates provider keys, each with its own window', async () => {
    const l = new PoolLimiter(redis, keys, pool(), 2, { rpm: 1, windowMs: 10_000, guardMs: 0 });
    const r = [await l.acquire(0), await l.acquire(0), await l.acquire(0)];
    expect(r.map((x) => (x.ok ? x.keyIndex : -1))).toEqual([0, 1, -1]);
  });

  it('a pause learned by one process stops shared admission at once and local admission after a refresh', async () => {
    const p = pool();
    const a = new PoolLimiter(redis, keys, p, 1, { windowMs: 10_000 });
    const b = new PoolLimiter(redis, keys, p, 1, { rpm: 100, windowMs: 10_000 });
    const c = new PoolLimiter(redis, keys, p, 1, { windowMs: 10_000 });
    expect(c.admitLocal().ok).toBe(true);
    expect(await a.learn(0, { remainingRequests: 0, resetRequestsMs: 5_000 })).toBe(5_000);
    // The process that learned it knows at once, without a round trip.
    const own = a.admitLocal();
    expect(own.ok).toBe(false);
    if (!own.ok) expect(own.waitMs).toBeGreaterThan(4_000);
    const shared = await b.acquire(0);
    expect(shared.ok).toBe(false);
    // Another process learns it from its periodic refresh.
    expect(c.admitLocal().ok).toBe(true);
    await c.refreshPauses();
    expect(c.admitLocal().ok).toBe(false);
  });

  it('a refresh under way when the process learns a pause does not erase it from the local view', async () => {
    const p = pool();
    const l = new PoolLimiter(redis, keys, p, 1, { windowMs: 10_000 });
    // The refresh reads the pause before the 429's pause is written, and its answer comes after.
    const refreshed = l.refreshPauses();
    const paused = l.pause(0, 20_000);
    await Promise.all([refreshed, paused]);
    expect(l.admitLocal().ok).toBe(false);
    // The next refresh reads it from Redis.
    await l.refreshPauses();
    expect(l.admitLocal().ok).toBe(false);
  });

  it('a refresh that starts while the process is still writing its pause does not erase it either', async () => {
    const p = pool();
    const l = new PoolLimiter(redis, keys, p, 1, { windowMs: 10_000 });
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      // The pause is known locally at once; its write to Redis (a PTTL, then the SET) is under way
      // when a refresh starts a little later and reads the key before the SET lands.
      const paused = l.pause(0, 20_000);
      vi.setSystemTime(Date.now() + 5);
      const refreshed = l.refreshPauses();
      await Promise.all([paused, refreshed]);
    } finally {
      vi.useRealTimers();
    }
    expect(l.admitLocal().ok).toBe(false);
    await l.refreshPauses();
    expect(l.admitLocal().ok).toBe(false);
  });

  it('never shortens a longer pause; a paused key is skipped for one that is free', async () => {
    const p = pool();
    const l = new PoolLimiter(redis, keys, p, 2, { windowMs: 10_000 });
    await l.pause(0, 5_000);
    await l.pause(0, 100);
    expect(await redis.pttl(keys.ratePause(p, 0))).toBeGreaterThan(4_000);
    const picks = [l.admitLocal(), l.admitLocal()];
    expect(picks.map((x) => (x.ok ? x.keyIndex : -1))).toEqual([1, 1]);
  });

  it('settle corrects the token estimate with the actual usage', async () => {
    const p = pool();
    const l = new PoolLimiter(redis, keys, p, 1, { tpm: 1_000, windowMs: 10_000, guardMs: 0 });
    const a = await l.acquire(900);
    expect(a.ok).toBe(true);
    expect((await l.acquire(200)).ok).toBe(false);
    if (a.ok) await l.settle(a, 100);
    expect((await l.acquire(200)).ok).toBe(true);
  });

  it('a lease takes a slice of the window in one round trip and admits the rest locally', async () => {
    const p = pool();
    // 600 per 10 s is 15 per 250 ms: one lease admits 15 requests.
    const settings = { rpm: 600, windowMs: 10_000, guardMs: 0, leaseMs: 250 };
    expect(leaseSize(settings)).toBe(15);
    const l = new PoolLimiter(redis, keys, p, 1, settings);
    const scripts = countScripts();
    const got = [];
    for (let i = 0; i < 15; i++) got.push(await l.acquire(0));
    expect(got.every((a) => a.ok)).toBe(true);
    expect(scripts()).toBe(1);
    // The window counts the whole lease at once, so other processes see it at once.
    expect(Number(await redis.hget(keys.rateWindow(p, 0), `r${(got[0] as { bucket: number }).bucket}`))).toBe(
      15,
    );
    await l.acquire(0);
    expect(scripts()).toBe(2);
  });

  it('unset, leases are on only where they cost the limit under 1 %: a provider-sized limit, a minute window', async () => {
    // 10,000 a minute: 41 per 250 ms, capped at 32 (under 1 % of the limit): leased.
    expect(leaseMsOf({ rpm: 10_000, windowMs: 60_000 })).toBe(AUTO_LEASE_MS);
    expect(leaseSize({ rpm: 10_000, windowMs: 60_000 })).toBe(32);
    // A small limit (a lease of 2 would be 1.6 % of 120), a short window (250 ms pads 10 s by 2.5 %),
    // a TPM limit (not leased), an explicit 0: a round trip per request, exact.
    expect(leaseMsOf({ rpm: 120, windowMs: 60_000 })).toBe(0);
    expect(leaseMsOf({ rpm: 300, windowMs: 10_000 })).toBe(0);
    expect(leaseMsOf({ rpm: 1_000_000, windowMs: 10_000 })).toBe(0);
    expect(leaseMsOf({ rpm: 10_000, tpm: 1_000_000, windowMs: 60_000 })).toBe(0);
    expect(leaseMsOf({ rpm: 10_000, windowMs: 60_000, leaseMs: 0 })).toBe(0);
    expect(leaseSize({ rpm: 300, windowMs: 10_000 })).toBe(1);

    const l = new PoolLimiter(redis, keys, pool(), 1, { rpm: 10_000, windowMs: 60_000 });
    const scripts = countScripts();
    for (let i = 0; i < 32; i++) expect((await l.acquire(0)).ok).toBe(true);
    expect(scripts()).toBe(1);
  });

  it('what the window counted still counts when a new limit turns leases on (same buckets)', async () => {
    const p = pool();
    // 100 a minute: no lease; 100 admitted exactly, one at a time.
    const l = new PoolLimiter(redis, keys, p, 1, { rpm: 100, windowMs: 60_000 });
    for (let i = 0; i < 100; i++) expect((await l.acquire(0)).ok).toBe(true);
    // Raised to 10,000 (leases on): the 100 already counted still count against it.
    l.settings = { rpm: 10_000, windowMs: 60_000 };
    const admitted = [];
    for (let i = 0; i < 9_950; i++) admitted.push(await l.acquire(0));
    expect(admitted.filter((a) => a.ok)).toHaveLength(9_900);
  });

  it('never admits more than the limit over processes taking leases at once, and gives unused slots back', async () => {
    const p = pool();
    const settings = { rpm: 40, windowMs: 1_000, guardMs: 0, leaseMs: 100 };
    expect(leaseSize(settings)).toBe(4);
    const procs = [1, 2, 3].map(() => new PoolLimiter(redis, keys, p, 1, settings));
    const scripts = countScripts();
    const results = await Promise.all(procs.flatMap((l) => Array.from({ length: 30 }, () => l.acquire(0))));
    expect(results.filter((a) => a.ok)).toHaveLength(40);
    // Concurrent admissions of a process share its lease request: about one round trip per lease
    // (10 leases of 4), and one per process and wave once the window is full, not one per request.
    expect(scripts()).toBeLessThanOrEqual(20);
  });

  it('a lease is dropped when its validity ends or a pause is learned, and its rest goes back', async () => {
    const p = pool();
    const l = new PoolLimiter(redis, keys, p, 1, { rpm: 3_000, windowMs: 10_000, guardMs: 0, leaseMs: 50 });
    expect(leaseSize(l.settings)).toBe(15);
    const first = await l.acquire(0);
    expect(first.ok).toBe(true);
    const bucket = (first as { bucket: number }).bucket;
    expect(Number(await redis.hget(keys.rateWindow(p, 0), `r${bucket}`))).toBe(15);
    l.releaseLeases();
    await until(async () => Number(await redis.hget(keys.rateWindow(p, 0), `r${bucket}`)) === 1, {
      what: 'the unused 14 slots given back',
    });
    // A pause learned here ends the lease at once: no local admission while paused.
    const again = await l.acquire(0);
    expect(again.ok).toBe(true);
    await l.pause(0, 5_000);
    const paused = await l.acquire(0);
    expect(paused.ok).toBe(false);
  });
});

/** Counts the limiter's script calls from now on (EVALSHA/EVAL commands on the shared client). */
function countScripts(): () => number {
  let n = 0;
  const send = redis.sendCommand.bind(redis);
  redis.sendCommand = (cmd, ...rest) => {
    if (cmd.name === 'evalsha' || cmd.name === 'eval') n++;
    return send(cmd, ...rest);
  };
  return () => n;
}
