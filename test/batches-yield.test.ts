import OpenAI, { toFile } from 'openai';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { poolBacklog } from '@faregate/queue/backlog';
import { makeKeys } from '@faregate/queue/keys';
import { until } from '@faregate/testing/env';
import { type Stack, startStack } from './support/stack.ts';

/**
 * Batches never shut out live traffic: with more batch lines queued and running than the pool's
 * load-shedding bound (MAX_POOL_BACKLOG), an interactive request is still admitted and answered, the
 * batch driver yields to it, and every batch still completes. (The bound once counted batch lines:
 * four batches of 256 lines in flight reached the default 1,000 and every interactive request of
 * the pool was refused with 503, while the driver, seeing no interactive work, never yielded.)
 */
let stack: Stack;
let client: OpenAI;
let redis: Redis;
const BOUND = 5;

beforeAll(async () => {
  stack = await startStack({
    providers: ['openai'],
    env: {
      MAX_POOL_BACKLOG: String(BOUND),
      WORKER_CONCURRENCY: '4',
      BATCH_MAX_IN_FLIGHT: '10',
      BATCH_INTERACTIVE_IN_FLIGHT: '2',
      BATCH_TICK_MS: '50',
    },
  });
  client = new OpenAI({ baseURL: `${stack.url}/v1`, apiKey: stack.apiKey, maxRetries: 0 });
  redis = new Redis(stack.redisUrl);
}, 90_000);
afterAll(async () => {
  redis?.disconnect();
  await stack?.stop();
});

// Each batch line takes the fake ~0.4 s (8 tokens, 50 ms apart).
const SLOW = '[[fake:{"fault":"slow_stream","chunkMs":50,"tokens":8}]]';
const line = (b: number, i: number) =>
  JSON.stringify({
    custom_id: `b${b}-${i}`,
    method: 'POST',
    url: '/v1/chat/completions',
    body: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: `${SLOW} line ${i}` }] },
  });

describe('batches and load shedding', () => {
  it('an interactive request is answered while batch lines beyond the bound are queued, and every batch completes', async () => {
    const ids: string[] = [];
    for (let b = 0; b < 3; b++) {
      const text = `${Array.from({ length: 10 }, (_, i) => line(b, i)).join('\n')}\n`;
      const f = await client.files.create({
        file: await toFile(Buffer.from(text), `b${b}.jsonl`),
        purpose: 'batch',
      });
      const batch = await client.batches.create({
        input_file_id: f.id,
        endpoint: '/v1/chat/completions',
        completion_window: '24h',
      });
      ids.push(batch.id);
    }
    // The batches' lines fill the pool: 4 run, the rest wait at batch priority, well over the bound.
    const backlog = await until(
      async () => {
        const b = await poolBacklog(redis, makeKeys(stack.prefix), 'openai');
        return b.prioritized + b.active >= 2 * BOUND ? b : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 20, what: 'batch lines queued beyond the bound' },
    );
    expect(backlog.total).toBeGreaterThanOrEqual(2 * BOUND);
    // Live traffic still gets in (no 503 overloaded), ahead of the waiting batch lines: one request
    // after another, so the gate has read the pool's backlog (every 100 ms) for the later ones.
    for (let i = 0; i < 5; i++) {
      const answer = await client.chat.completions.create({
        model: 'gpt-4o-mini',
        messages: [{ role: 'user', content: `interactive ${i} while batches run` }],
      });
      expect(answer.choices[0]?.message.content).toBeTruthy();
    }
    const still = await Promise.all(ids.map((id) => client.batches.retrieve(id)));
    expect(still.some((b) => b.status === 'in_progress')).toBe(true);
    // And the batches all finish, every line done.
    for (const id of ids) {
      const b = await until(
        async () => {
          const x = await client.batches.retrieve(id);
          return ['completed', 'failed', 'expired', 'cancelled'].includes(x.status) ? x : undefined;
        },
        { timeoutMs: 60_000, intervalMs: 100, what: `batch ${id} to end` },
      );
      expect(b.status).toBe('completed');
      expect(b.request_counts).toEqual({ total: 10, completed: 10, failed: 0 });
    }
  }, 120_000);
});
