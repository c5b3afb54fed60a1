import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testRedis, until } from '@faregate/testing/env';
import { makeKeys } from '@faregate/queue/keys';
import { createRedis } from '@faregate/queue/redis';
import { CircuitBreaker } from './circuit.ts';

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
});
