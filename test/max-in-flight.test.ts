import { Redis } from 'ioredis';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeKeys } from '@faregate/queue/keys';
import { until } from '@faregate/testing/env';
import { jobApi } from './support/jobs.ts';
import { type Stack, startStack } from './support/stack.ts';

/**
 * A pool's max-in-flight holds for fast-lane runs and queued runs together, across worker
 * processes (README, Configuration): the provider never has more than the limit open at once,
 * interactive requests still take the lane, and a worker killed with -9 loses nothing (its lane
 * runs stop counting when their leases lapse).
 */

const LIMIT = 3;
let stack: Stack;
let redis: Redis;
let client: OpenAI;

beforeAll(async () => {
  stack = await startStack({
    providers: ['openai'],
    env: {
      WORKER_MAX_IN_FLIGHT: String(LIMIT),
      WORKER_LOCK_MS: '2000',
      WORKER_STALLED_INTERVAL_MS: '500',
    },
  });
  await stack.start('worker:openai');
  redis = new Redis(stack.redisUrl);
  client = new OpenAI({ apiKey: stack.apiKey, baseURL: `${stack.url}/v1`, maxRetries: 0 });
  const keys = makeKeys(stack.prefix);
  // The pool advertises its lane although it has a max-in-flight.
  await until(async () => ((await redis.get(keys.fast('openai', 'alive'))) === '1' ? true : undefined), {
    what: 'the lane advertised',
  });
  // The ingress looks a pool's lane up on its first interactive request.
  await client.chat.completions.create({
    model: 'openai/gpt-4o-mini',
    messages: [{ role: 'user', content: 'warm' }],
  });
}, 120_000);

afterAll(async () => {
  redis?.disconnect();
  await stack?.stop();
});

const ask = (content: string) =>
  client.chat.completions
    .create({ model: 'openai/gpt-4o-mini', messages: [{ role: 'user', content }] })
    .withResponse();

/** Polls how many lane runs the pool counts in flight, keeping the most seen, until `stop`. */
function watchLane(stop: Promise<unknown>): Promise<number> {
  const key = makeKeys(stack.prefix).laneInFlight('openai');
  let most = 0;
  let done = false;
  void stop.finally(() => {
    done = true;
  });
  return (async () => {
    while (!done) {
      most = Math.max(most, await redis.zcard(key));
      await new Promise((r) => setTimeout(r, 10));
    }
    return most;
  })();
}

async function settledOnce(ids: string[]) {
  const rows = await until(
    async () => {
      const q = await stack.sql.query(
        'SELECT request_id FROM usage_events WHERE request_id = ANY($1) AND final AND outcome = $2',
        [ids, 'success'],
      );
      return q.rows.length >= ids.length ? q.rows : undefined;
    },
    { timeoutMs: 45_000, what: 'every request settled' },
  );
  expect(rows.map((r) => r.request_id).sort()).toEqual([...ids].sort());
}

describe('max-in-flight with the fast lane', () => {
  it('lane runs and queued jobs of two workers never have more than the limit open at the provider, and use it', async () => {
    stack.fake.configure({ provider: 'openai', chunkMs: 20, tokens: 12 });
    stack.fake.resetPeakInFlight();
    stack.fake.clearCalls();
    const jobs = jobApi(stack.url);
    const interactive = Promise.all(Array.from({ length: 10 }, (_, i) => ask(`lane ${i}`)));
    const laneMost = watchLane(interactive);
    // Queued jobs arrive while lane runs hold the pool: they get what the lane leaves. (Sent before
    // the lane is seen in use, they may take the whole pool first on a loaded machine; then every
    // interactive request rightly waits on the queue, and the lane is never used.)
    const keys = makeKeys(stack.prefix);
    await until(async () => ((await redis.zcard(keys.laneInFlight('openai'))) > 0 ? true : undefined), {
      what: 'lane runs in flight',
    });
    const asyncIds = await Promise.all(
      Array.from({ length: 4 }, (_, i) => jobs.submit(stack.apiKey, `queued ${i}`, 'openai/gpt-4o-mini')),
    );
    const answers = await interactive;
    for (const a of answers) {
      expect(a.response.status).toBe(200);
      expect(a.data.choices[0]?.message.content?.split(' ')).toHaveLength(12);
    }
    for (const id of asyncIds) expect((await jobs.finished(stack.apiKey, id)).status).toBe('completed');
    // Interactive requests ran on the lane, under the limit.
    expect(await laneMost).toBeGreaterThan(0);
    expect(stack.fake.peakInFlight('openai')).toBeLessThanOrEqual(LIMIT);
    expect(stack.fake.peakInFlight('openai')).toBe(LIMIT);
    const ids = answers.map((a) => a.response.headers.get('x-request-id') ?? '');
    // Each request reached the provider once.
    expect(stack.fake.calls().filter((c) => c.model !== null)).toHaveLength(14);
    await settledOnce([...ids, ...asyncIds]);
  }, 90_000);

  it('kill -9 of a worker with lane runs in flight: nothing lost or answered twice, never over the limit, full capacity again after', async () => {
    stack.fake.configure({ provider: 'openai', chunkMs: 60, tokens: 12 });
    stack.fake.resetPeakInFlight();
    const live = stack.services.filter(
      (x) => x.name === 'worker:openai' && x.proc.exitCode === null && x.proc.signalCode === null,
    );
    expect(live.length).toBeGreaterThanOrEqual(2);
    const keys = makeKeys(stack.prefix);
    const interactive = Promise.all(Array.from({ length: 8 }, (_, i) => ask(`survive ${i}`)));
    // Kill one worker while the pool is full and lane runs are in flight.
    await until(async () => ((await redis.zcard(keys.laneInFlight('openai'))) > 0 ? true : undefined), {
      what: 'lane runs in flight',
    });
    live[0]!.proc.kill('SIGKILL');
    const answers = await interactive;
    for (const a of answers) {
      expect(a.response.status).toBe(200);
      expect(a.data.choices[0]?.message.content?.split(' ')).toHaveLength(12);
    }
    expect(stack.fake.peakInFlight('openai')).toBeLessThanOrEqual(LIMIT);
    await settledOnce(answers.map((a) => a.response.headers.get('x-request-id') ?? ''));
    // The dead worker's lane runs stopped counting: BullMQ gets the whole limit back.
    await until(
      async () =>
        (await redis.hget(keys.bull('openai', 'meta'), 'concurrency')) === String(LIMIT) ? true : undefined,
      { timeoutMs: 10_000, what: 'the full limit back' },
    );
    expect(await redis.zcard(keys.laneInFlight('openai'))).toBe(0);
  }, 90_000);
});
