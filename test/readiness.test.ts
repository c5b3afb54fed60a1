import { Redis } from 'ioredis';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { until } from '@faregate/testing/env';
import { RawWs } from './support/raw-ws.ts';
import { type Stack, startStack } from './support/stack.ts';

/**
 * Readiness that means ready: until a pool the deployment runs (EXPECTED_POOLS) has registered,
 * `/readyz` is 503 and its models answer 503 with retry-after naming the pool, never 404.
 */

let stack: Stack;
let client: OpenAI;

beforeAll(async () => {
  stack = await startStack({
    providers: [],
    // A pool's record (its liveness) is rewritten every second and lapses after three.
    env: { EXPECTED_POOLS: 'openai', LIVENESS_INTERVAL_MS: '1000' },
    waitReady: false,
  });
  client = new OpenAI({ apiKey: stack.apiKey, baseURL: `${stack.url}/v1`, maxRetries: 0 });
}, 90_000);

afterAll(async () => {
  await stack?.stop();
});

const ask = [{ role: 'user' as const, content: 'are you there?' }];

async function readyz() {
  const r = await fetch(`${stack.url}/readyz`);
  return {
    status: r.status,
    retryAfter: r.headers.get('retry-after'),
    body: (await r.json()) as { status: string; expected: Record<string, string>; waiting_for?: string[] },
  };
}

async function refusal(model: string) {
  const e = await client.chat.completions.create({ model, messages: ask }).catch((x: unknown) => x);
  expect(e, model).toBeInstanceOf(OpenAI.APIError);
  return e as InstanceType<typeof OpenAI.APIError>;
}

describe('readiness', () => {
  it('waits for the expected pools: 503 with retry-after naming the pool, then ready and serving', async () => {
    const before = await readyz();
    expect(before.status).toBe(503);
    expect(before.retryAfter).toBe('1');
    // (And billing's bootstrap credit, until billing has applied it.)
    expect(before.body.waiting_for).toContain('openai');
    expect(before.body.expected).toEqual({ openai: 'waiting' });

    for (const model of ['openai/gpt-4o-mini', 'gpt-4o-mini', 'auto']) {
      const e = await refusal(model);
      expect(e.status, model).toBe(503);
      expect(e.code, model).toBe('provider_unavailable');
      expect(e.message, model).toContain('openai');
      expect(e.headers?.get('retry-after'), model).toBe('1');
    }
    // A provider the deployment does not run is still unknown.
    expect((await refusal('gemini/gemini-2.5-flash')).status).toBe(404);
    // A WebSocket submit is refused the same way, and says when to try again (no header there).
    const ws = await RawWs.open(stack.url, stack.apiKey);
    try {
      ws.send({ op: 'submit', id: 's', request: { model: 'gpt-4o-mini', messages: ask } });
      expect(await ws.next((m) => m.id === 's')).toMatchObject({
        type: 'nack',
        op: 'submit',
        error: { code: 'provider_unavailable', type: 'server_error', retryable: true, retryAfterMs: 1_000 },
      });
    } finally {
      await ws.close();
    }

    await stack.start('worker:openai');
    // A process start (TypeScript loaded) on a loaded 2-core box can take longer than 10 s (CI once did).
    await until(async () => (await readyz()).status === 200, {
      timeoutMs: 60_000,
      what: '/readyz 200 once openai registered (and the bootstrap credit applied)',
    });
    // Ready means the bootstrap key is funded: the first request is not refused for its balance.
    expect((await readyz()).body.expected).toEqual({ openai: 'live' });
    const r = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: ask });
    expect(r.model).toBe('openai/gpt-4o-mini');
  });

  it('a pool whose only worker is frozen (SIGSTOP) is seen lost within seconds: its requests get the 503 at once, not a wait; thawed, it is live again', async () => {
    const worker = stack.services.find(
      (s) => s.name === 'worker:openai' && s.proc.exitCode === null && s.proc.signalCode === null,
    )!;
    worker.proc.kill('SIGSTOP');
    try {
      await until(async () => ((await readyz()).body.expected.openai === 'lost' ? true : undefined), {
        timeoutMs: 15_000,
        what: 'the frozen pool seen lost',
      });
      const started = Date.now();
      const e = await refusal('openai/gpt-4o-mini');
      expect(e.status).toBe(503);
      expect(e.headers?.get('retry-after')).toBeTruthy();
      expect(Date.now() - started).toBeLessThan(2_000);
    } finally {
      worker.proc.kill('SIGCONT');
    }
    await until(async () => ((await readyz()).body.expected.openai === 'live' ? true : undefined), {
      timeoutMs: 15_000,
      what: 'the thawed pool live again',
    });
    const r = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: ask });
    expect(r.model).toBe('openai/gpt-4o-mini');
  });

  it('a pool that loses its workers answers 503 with retry-after (the ingress stays ready)', async () => {
    const redis = new Redis(stack.redisUrl);
    try {
      // What the record's expiry does once the last worker is gone, without waiting for it.
      for (const w of stack.services.filter((s) => s.name === 'worker:openai')) w.proc.kill('SIGKILL');
      await redis.del(`${stack.prefix}:models:openai`);
      await until(async () => (await readyz()).body.expected.openai === 'lost', { what: 'openai seen lost' });
      expect((await readyz()).status).toBe(200);
      const e = await refusal('openai/gpt-4o-mini');
      expect(e.status).toBe(503);
      expect(e.message).toContain('openai');
    } finally {
      redis.disconnect();
    }
  });
});
