import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDb } from '@faregate/db/client';
import { CLEAN_LEDGER, checkLedgerInvariants } from '@faregate/db/invariants';
import { makeKeys, usagePartition } from '@faregate/queue/keys';
import { until } from '@faregate/testing/env';
import { adminCall } from './support/calls.ts';
import { type Stack, startStack } from './support/stack.ts';

/**
 * Requests queued for a pool whose only worker froze (SIGSTOP) before anyone could tell: once the
 * pool is seen lost, they go on to their route's next live hop (lost-pools.ts) instead of waiting
 * for the frozen worker, and they run once: the thawed worker finds its copies gone or refused.
 */

let stack: Stack;
let client: OpenAI;
const ask = (content: string) => [{ role: 'user' as const, content }];
const json = (key: string) => ({ authorization: `Bearer ${key}`, 'content-type': 'application/json' });

beforeAll(async () => {
  const configPath = join(tmpdir(), `fg-lost-pool-${process.pid}-${Date.now()}.json`);
  writeFileSync(
    configPath,
    JSON.stringify({ fallbacks: { 'openai/gpt-4o-mini': ['anthropic/claude-haiku-4-5'] } }),
  );
  stack = await startStack({
    providers: ['openai', 'anthropic'],
    // A pool's record (its liveness) is rewritten every second and lapses after three; the ingress
    // reads the records (and moves the lost pools' jobs) every half second.
    // A job's lock lapses 3 s after its worker stopped renewing it.
    env: {
      FAREGATE_CONFIG: configPath,
      LIVENESS_INTERVAL_MS: '1000',
      DIRECTORY_REFRESH_MS: '500',
      WORKER_LOCK_MS: '3000',
    },
  });
  client = new OpenAI({ apiKey: stack.apiKey, baseURL: `${stack.url}/v1`, maxRetries: 0 });
}, 120_000);

afterAll(async () => {
  await stack?.stop();
});

async function usageRows(id: string) {
  const r = await stack.sql.query<{ provider: string; outcome: string }>(
    'SELECT provider, outcome FROM usage_events WHERE request_id = $1',
    [id],
  );
  return r.rows;
}

/** The async job once completed (by whichever hop answers it). */
const completed = (jobId: string, timeoutMs: number) =>
  until(
    async () => {
      const r = await fetch(`${stack.url}/v1/jobs/${jobId}`, { headers: json(stack.apiKey) });
      const body = (await r.json()) as { status: string; result?: { model: string } };
      return body.status === 'completed' ? body : undefined;
    },
    { timeoutMs, what: `job ${jobId} completed` },
  );

/** Provider calls the fake received (model listings left out). */
const calls = (provider: string) =>
  stack.fake.calls().filter((c) => c.provider === provider && c.model !== null).length;

/** Proof the openai pool serves (and its lane is advertised) before a test freezes it. */
async function servesOpenai() {
  const warm = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: ask('hi') });
  expect(warm.model).toBe('openai/gpt-4o-mini');
}

const liveWorker = (name: string) =>
  stack.services.find((s) => s.name === name && s.proc.exitCode === null && s.proc.signalCode === null)!;

describe('a pool lost with jobs queued for it', () => {
  it('moves its queued requests, interactive and async, to the next live hop; each runs and is billed once', async () => {
    const worker = liveWorker('worker:openai');
    await servesOpenai();
    const openaiCalls = () => calls('openai');
    const before = openaiCalls();

    worker.proc.kill('SIGSTOP');
    let thawed = false;
    try {
      // Sent at once, while the pool still looks live: queued for openai (its lane, then its queue).
      const interactive = client.chat.completions
        .create({ model: 'gpt-4o-mini', messages: ask('still there?') })
        .withResponse();
      const submitted = await fetch(`${stack.url}/v1/jobs`, {
        method: 'POST',
        headers: json(stack.apiKey),
        body: JSON.stringify({ model: 'gpt-4o-mini', messages: ask('async, please'), max_tokens: 16 }),
      });
      expect(submitted.status).toBe(202);
      const { id: jobId } = (await submitted.json()) as { id: string };

      const { data, response } = await interactive;
      expect(data.model).toMatch(/^anthropic\/claude-haiku-4-5/);
      expect(data.choices[0]?.message.content).toBeTruthy();
      expect(response.headers.get('x-faregate-attempts')).toBe('openai:pool_lost,anthropic:ok');

      const job = await completed(jobId, 20_000);
      expect(job.result?.model).toMatch(/^anthropic\/claude-haiku-4-5/);

      // While it is lost, its models are served by their live fallbacks, by any name.
      for (const model of ['gpt-4o-mini', 'openai/gpt-4o-mini']) {
        const r = await client.chat.completions.create({ model, messages: ask('lost?') });
        expect(r.model, model).toMatch(/^anthropic\/claude-haiku-4-5/);
      }
      // ...but never for a key limited to the lost model: its answer is the pool's 503, as a
      // fallback it may not use never answers for it.
      const acc = await adminCall(stack, 'POST', '/admin/v1/accounts', { name: 'mini only' });
      await adminCall(stack, 'POST', '/admin/v1/credits', { account_id: acc.id, amount_usd: '5' });
      const k = await adminCall(stack, 'POST', '/admin/v1/keys', {
        account_id: acc.id,
        name: 'mini',
        allowed_models: ['openai/gpt-4o-mini'],
      });
      const limited = new OpenAI({ apiKey: k.key as string, baseURL: `${stack.url}/v1`, maxRetries: 0 });
      const refused = await limited.chat.completions
        .create({ model: 'openai/gpt-4o-mini', messages: ask('lost?') })
        .catch((e: unknown) => e);
      expect(refused).toBeInstanceOf(OpenAI.APIError);
      expect(refused).toMatchObject({ status: 503, code: 'provider_unavailable' });

      // Thawed, the worker finds nothing left of either job to run: no openai call, no second usage.
      worker.proc.kill('SIGCONT');
      thawed = true;
      await until(
        async () =>
          (await client.chat.completions.create({ model: 'gpt-4o-mini', messages: ask('back?') })).model ===
          'openai/gpt-4o-mini',
        { timeoutMs: 15_000, what: 'the thawed pool serving again' },
      );
      // One openai call since the freeze: the request that found the pool serving again.
      expect(openaiCalls()).toBe(before + 1);
      const interactiveId = response.headers.get('x-request-id')!;
      for (const id of [interactiveId, jobId]) {
        const rows = await until(
          async () => {
            const r = await usageRows(id);
            return r.length ? r : undefined;
          },
          { what: `usage of ${id}` },
        );
        expect(rows, id).toEqual([{ provider: 'anthropic', outcome: 'success' }]);
      }
    } finally {
      if (!thawed) worker.proc.kill('SIGCONT');
    }
  });

  it('moves on a job its worker was running when it froze, once its lock lapsed: answered by the fallback, the frozen call billed once', async () => {
    const worker = liveWorker('worker:openai');
    await servesOpenai();
    const openaiCalls = () => calls('openai');
    const before = openaiCalls();
    // The provider answers after 4 s: the worker is mid-call when it freezes.
    stack.fake.configure({ provider: 'openai', firstByteMs: 4_000 });
    let thawed = false;
    const redis = new Redis(stack.redisUrl);
    try {
      const submitted = await fetch(`${stack.url}/v1/jobs`, {
        method: 'POST',
        headers: json(stack.apiKey),
        body: JSON.stringify({ model: 'gpt-4o-mini', messages: ask('frozen mid-call'), max_tokens: 16 }),
      });
      expect(submitted.status).toBe(202);
      const { id: jobId } = (await submitted.json()) as { id: string };
      await until(async () => (openaiCalls() === before + 1 ? true : undefined), {
        what: 'the worker calling openai',
      });
      worker.proc.kill('SIGSTOP');

      // No other worker of the pool is up to see the lapsed lock: the ingress moves the job on.
      const job = await completed(jobId, 30_000);
      expect(job.result?.model).toMatch(/^anthropic\/claude-haiku-4-5/);
      // The frozen call is billed (estimated) and the fallback's in full: one row each.
      const billed = await until(
        async () => {
          const r = await usageRows(jobId);
          return r.length === 2 ? r : undefined;
        },
        { what: 'both calls billed' },
      );
      expect(billed.map((r) => `${r.provider}:${r.outcome}`).sort()).toEqual([
        'anthropic:success',
        'openai:failed',
      ]);

      // Thawed, the worker gets its answer, finds the job gone on, and reports its call's real usage:
      // the same call, so the ledger keeps the one row, now with the provider's count.
      stack.fake.configure({ provider: 'openai', firstByteMs: 0 });
      worker.proc.kill('SIGCONT');
      thawed = true;
      const usageKey = makeKeys(stack.prefix).usage(usagePartition(jobId));
      await until(
        async () => {
          const entries = await redis.xrange(usageKey, '-', '+');
          const mine = entries.filter(([, f]) => f.join(' ').includes(jobId));
          return mine.length >= 3 ? true : undefined;
        },
        { timeoutMs: 20_000, what: "the thawed worker's usage event for its call" },
      );
      await until(
        async () =>
          (await client.chat.completions.create({ model: 'gpt-4o-mini', messages: ask('back?') })).model ===
          'openai/gpt-4o-mini',
        { timeoutMs: 15_000, what: 'the thawed pool serving again' },
      );
      const after = await fetch(`${stack.url}/v1/jobs/${jobId}`, { headers: json(stack.apiKey) });
      expect(((await after.json()) as { result?: { model: string } }).result?.model).toMatch(/^anthropic\//);
      expect((await usageRows(jobId)).map((r) => `${r.provider}:${r.outcome}`).sort()).toEqual([
        'anthropic:success',
        'openai:failed',
      ]);
      // The estimate (the prompt only) is replaced by the call's own usage, answer included.
      const frozenCall = await until(
        async () => {
          const r = await stack.sql.query<{ estimated: boolean; output_tokens: number }>(
            "SELECT estimated, output_tokens FROM usage_events WHERE request_id = $1 AND provider = 'openai'",
            [jobId],
          );
          return r.rows[0] && !r.rows[0].estimated ? r.rows[0] : undefined;
        },
        { what: "the frozen call's estimate replaced by its usage" },
      );
      expect(frozenCall.output_tokens).toBeGreaterThan(0);
      const { db, close } = createDb(stack.databaseUrl, { max: 1 });
      try {
        expect(await checkLedgerInvariants(db)).toEqual(CLEAN_LEDGER);
      } finally {
        await close();
      }
    } finally {
      stack.fake.configure({ provider: 'openai', firstByteMs: 0 });
      if (!thawed) worker.proc.kill('SIGCONT');
      redis.disconnect();
    }
  });

  it('a stream its frozen worker had begun ends cut off, blamed on that call, which alone is billed: the next hop makes no call', async () => {
    const worker = liveWorker('worker:openai');
    await servesOpenai();
    const anthropicBefore = calls('anthropic');
    stack.fake.configure({ provider: 'openai', chunkMs: 100, tokens: 200 });
    let thawed = false;
    try {
      const { data: stream, response } = await client.chat.completions
        .create({ model: 'gpt-4o-mini', messages: ask('stream, then freeze'), stream: true })
        .withResponse();
      const id = response.headers.get('x-request-id') ?? '';
      let text = '';
      let frozen = false;
      const ended = await (async () => {
        for await (const c of stream) {
          text += c.choices[0]?.delta.content ?? '';
          if (!frozen && text.split(' ').length >= 3) {
            frozen = true;
            worker.proc.kill('SIGSTOP');
          }
        }
      })().catch((e: unknown) => e);
      expect(frozen).toBe(true);
      // The caller has content it cannot take back: the job ends with the cut-off, named after the
      // call that streamed it, and the fallback is never called.
      expect(ended).toBeInstanceOf(OpenAI.APIError);
      expect((ended as Error).message).toMatch(/The answer from openai\/gpt-4o-mini was cut off/);
      expect((ended as Error).message).not.toMatch(/anthropic|candidates failed/);
      expect(calls('anthropic')).toBe(anthropicBefore);
      // One row: the frozen call, estimated from what it streamed, the request's final event.
      const rows = await until(
        async () => {
          const r = await stack.sql.query<{
            provider: string;
            final: boolean;
            estimated: boolean;
            out: boolean;
          }>(
            'SELECT provider, final, estimated, output_tokens > 0 AS out FROM usage_events WHERE request_id = $1',
            [id],
          );
          return r.rows.length > 0 ? r.rows : undefined;
        },
        { what: 'the cut-off call billed' },
      );
      expect(rows).toEqual([{ provider: 'openai', final: true, estimated: true, out: true }]);
    } finally {
      stack.fake.configure({ provider: 'openai', chunkMs: 0, tokens: 12 });
      if (!thawed) worker.proc.kill('SIGCONT');
      thawed = true;
    }
    await until(
      async () =>
        (await client.chat.completions.create({ model: 'gpt-4o-mini', messages: ask('back?') })).model ===
        'openai/gpt-4o-mini',
      { timeoutMs: 15_000, what: 'the thawed pool serving again' },
    );
  });
});
