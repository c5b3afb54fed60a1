import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testRedis, until } from '@faregate/testing/env';
import { makeKeys } from '@faregate/queue/keys';
import { createRedis } from '@faregate/queue/redis';
import { CircuitBreaker, type Probe } from './circuit.ts';

const { url, prefix } = testRedis();
const keys = makeKeys(prefix);
let redis: Redis;
let n = 0;
const config = { windowMs: 10_000, minSamples: 4, failureRatio: 0.5, openMs: 200 };
beforeAll(() => {
  redis = createRedis(url);
});
afterAll(() => redis.disconnect());

describe('CircuitBreaker', () => {
  it('opens when failures reach the ratio over enough samples, shared by every process', async () => {
    const p = `circ${++n}`;
    const a = new CircuitBreaker(redis, keys, p, config);
    const b = new CircuitBreaker(redis, keys, p, config);
    await a.success();
    await a.failure();
    await a.failure();
    expect(a.state).toBe('closed');
    await b.failure();
    expect(b.state).toBe('open');
    expect(await b.allow()).toBe(false);
    // Another process sees it at its next check (a closed circuit is re-read every 250 ms).
    expect(await new CircuitBreaker(redis, keys, p, config).allow()).toBe(false);
  });

  it('after openMs one probe goes through: its success closes the circuit, its failure re-opens it', async () => {
    const p = `circ${++n}`;
    const a = new CircuitBreaker(redis, keys, p, { ...config, minSamples: 1 });
    await a.failure();
    expect(a.state).toBe('open');
    // Refused while open; the first call allowed after openMs is the probe.
    expect(await a.allow()).toBe(false);
    await until(() => a.allow(), { timeoutMs: config.openMs + 5_000, what: 'the probe' });
    expect(a.state).toBe('half-open');
    // Only one probe while it is out.
    expect(await new CircuitBreaker(redis, keys, p, config).allow()).toBe(false);
    await a.failure();
    expect(a.state).toBe('open');
    await until(() => a.allow(), { timeoutMs: config.openMs + 5_000, what: 'the second probe' });
    await a.success();
    expect(a.state).toBe('closed');
    expect(await redis.exists(keys.circuit(p))).toBe(0);
  });

  it('a probe that ends neither way does not hold the circuit for openMs: no answer lets the next call probe, a 4xx answer closes it', async () => {
    const p = `circ${++n}`;
    // A long openMs: nothing here waits for it.
    const slow = { ...config, minSamples: 1, openMs: 60_000 };
    const a = new CircuitBreaker(redis, keys, p, slow);
    const b = new CircuitBreaker(redis, keys, p, slow);
    await a.failure();
    // The cool-down passed.
    await redis.hset(keys.circuit(p), 'until', 0);
    const first = await a.allow();
    expect(first).toMatchObject({ probe: expect.any(Number) });
    expect(await b.allow()).toBe(false);
    // Cancelled, or stopped before its call: the next caller is the probe at once.
    await a.probeEnded(false, first as Probe);
    const second = await b.allow();
    expect(second).toMatchObject({ probe: expect.any(Number) });
    expect(await a.allow()).toBe(false);
    // The provider answered it (a bad request, a rate limit): it is up, the circuit closes.
    await b.probeEnded(true, second as Probe);
    expect(b.state).toBe('closed');
    expect(await redis.exists(keys.circuit(p))).toBe(0);
    expect(await new CircuitBreaker(redis, keys, p, slow).allow()).toBe(true);
  });

  it('a probe that outlived openMs, its place taken by a second, does not let a third run when it ends without a verdict', async () => {
    const p = `circ${++n}`;
    const slow = { ...config, minSamples: 1, openMs: 60_000 };
    const [a, b, c] = [0, 1, 2].map(() => new CircuitBreaker(redis, keys, p, slow));
    await a!.failure();
    await redis.hset(keys.circuit(p), 'until', 0);
    const first = (await a!.allow()) as Probe;
    expect(first).toMatchObject({ probe: expect.any(Number) });
    // The first probe ran past openMs: the next caller probes in its place.
    await redis.hset(keys.circuit(p), 'until', 0);
    const second = (await b!.allow()) as Probe;
    expect(second.probe).not.toBe(first.probe);
    // The first ends without a verdict (cancelled): the second is still running, so no third.
    await a!.probeEnded(false, first);
    expect(await c!.allow()).toBe(false);
    // The second's own release lets the next caller probe.
    await b!.probeEnded(false, second);
    expect(await c!.allow()).toMatchObject({ probe: expect.any(Number) });
  });
});
