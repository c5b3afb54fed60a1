import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { until } from '@faregate/testing/env';
import { jobApi } from './support/jobs.ts';
import { freePort, type Stack, startStack } from './support/stack.ts';
import { sample } from './support/prometheus.ts';

/**
 * `faregate_pool_backlog{pool}`, the figure KEDA scales a pool's workers on (the Helm chart's
 * ScaledObjects), served by the ingress's /metrics: with one slow worker slot, every request sent is
 * in the backlog (queued, in the fast lane or running) until it finished, and then it is 0 again.
 */

let stack: Stack;
let metricsUrl: string;

beforeAll(async () => {
  const port = await freePort();
  stack = await startStack({
    env: { WORKER_CONCURRENCY: '1' },
    ingressEnv: { METRICS_PORT: String(port), EXPECTED_POOLS: 'openai' },
  });
  metricsUrl = `http://127.0.0.1:${port}/metrics`;
}, 90_000);

afterAll(async () => {
  await stack?.stop();
});

const backlog = async () => {
  const r = await fetch(metricsUrl);
  expect(r.status).toBe(200);
  const text = await r.text();
  return { text, value: sample(text, 'faregate_pool_backlog', { pool: 'openai' }) };
};

describe('faregate_pool_backlog', () => {
  it('is 0 when idle, with one HELP and TYPE line', async () => {
    const { text, value } = await backlog();
    expect(value).toBe(0);
    expect(text.split('\n').filter((l) => l === '# TYPE faregate_pool_backlog gauge')).toHaveLength(1);
  });

  it('counts every queued, fast-lane and running request of the pool until it finished', async () => {
    // Each call takes 3 s and the pool runs one at a time: 6 async jobs and 1 stream wait their turn
    // (3 s: the seven submitted, and the backlog read, on a loaded box, before the first ends).
    stack.fake.configure({ provider: 'openai', firstByteMs: 3_000 });
    const jobs = jobApi(stack.url);
    const ids = await Promise.all(
      Array.from({ length: 6 }, (_, i) => jobs.submit(stack.apiKey, `backlog ${i}`)),
    );
    const client = new OpenAI({ apiKey: stack.apiKey, baseURL: `${stack.url}/v1`, maxRetries: 0 });
    const streamed = (async () => {
      const s = await client.chat.completions.create({
        model: 'openai/gpt-4o-mini',
        messages: [{ role: 'user', content: 'backlog stream' }],
        stream: true,
      });
      for await (const _ of s);
    })();
    // All 7 are in it (the first finishes 3 s after it started, so this holds for a while).
    const seen = await until(
      async () => {
        const b = await backlog();
        return b.value === 7 ? b : undefined;
      },
      { timeoutMs: 10_000, what: 'a backlog of 7' },
    );
    // BullMQ's own counts agree on the queued part: at most one runs, the rest wait.
    const active = sample(seen.text, 'bullmq_job_count', { pool: 'openai', state: 'active' }) ?? 0;
    expect(active).toBeLessThanOrEqual(1);
    // It goes down as requests finish (never above 7, but for the instant the stream's job is
    // handed from the fast lane to BullMQ, when it is counted in both), and reaches 0 when all did.
    await until(
      async () => {
        const { value } = await backlog();
        expect(value).toBeLessThanOrEqual(8);
        return value === 0;
      },
      { timeoutMs: 40_000, what: 'the backlog back to 0' },
    );
    await streamed;
    for (const id of ids) expect((await jobs.finished(stack.apiKey, id)).status).toBe('completed');
  }, 60_000);
});
