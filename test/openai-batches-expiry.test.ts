import OpenAI, { toFile } from 'openai';
import type { Batch } from 'openai/resources/batches';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { until } from '@faregate/testing/env';
import { type Stack, startStack } from './support/stack.ts';
import { adminCall } from './support/calls.ts';

/**
 * A batch's window against lines waiting out a provider's long rate-limit pause: lines with no
 * provider call under way end at `expires_at`, never call the provider after it, and cost nothing.
 */
let stack: Stack;

const WINDOW_S = 8;
/** A 429 whose retry-after far outlasts the window (a daily quota says hours). */
const LONG_429 = '[[fake:{"fault":"429","retryAfterMs":100000}]]';

const line = (id: string, content: string) => ({
  custom_id: id,
  method: 'POST',
  url: '/v1/chat/completions',
  body: { model: 'gpt-4o-mini', messages: [{ role: 'user', content }] },
});

/** A fresh tenant (its holds and usage are the test's alone) and its client. */
async function tenant(): Promise<{ accountId: string; client: OpenAI }> {
  const acc = await adminCall(stack, 'POST', '/admin/v1/accounts', { name: `t${Date.now()}` });
  await adminCall(stack, 'POST', '/admin/v1/credits', { account_id: acc.id, amount_usd: '10' });
  const k = await adminCall(stack, 'POST', '/admin/v1/keys', { account_id: acc.id, name: 'k' });
  return {
    accountId: String(acc.id),
    client: new OpenAI({ baseURL: `${stack.url}/v1`, apiKey: String(k.key), maxRetries: 0 }),
  };
}

async function start(client: OpenAI, lines: unknown[]): Promise<Batch> {
  const text = `${lines.map((l) => JSON.stringify(l)).join('\n')}\n`;
  const f = await client.files.create({ file: await toFile(Buffer.from(text), 'b.jsonl'), purpose: 'batch' });
  return client.batches.create({
    input_file_id: f.id,
    endpoint: '/v1/chat/completions',
    completion_window: '24h',
  });
}

async function ended(client: OpenAI, id: string): Promise<Batch> {
  return until(
    async () => {
      const b = await client.batches.retrieve(id);
      return ['completed', 'failed', 'expired', 'cancelled'].includes(b.status) ? b : undefined;
    },
    { timeoutMs: 40_000, intervalMs: 100, what: `batch ${id} to end` },
  );
}

/**
 * Once billing settled every line that was fed (a line never fed has no job, no hold and no usage):
 * each fed line's final usage events and tokens, by job id; no hold of the account is left.
 */
async function billing(accountId: string, batchId: string) {
  const fed = await stack.sql.query<{ job_id: string }>(
    'SELECT job_id FROM batch_lines WHERE batch_id = $1 AND job_id IS NOT NULL',
    [batchId],
  );
  const jobs = fed.rows.map((r) => r.job_id);
  return until(
    async () => {
      const r = await stack.sql.query(
        `SELECT request_id, count(*) FILTER (WHERE final)::int AS finals,
                sum(input_tokens + output_tokens)::int AS tokens
         FROM usage_events WHERE account_id = $1 GROUP BY request_id`,
        [accountId],
      );
      const held = await stack.sql.query('SELECT count(*)::int AS n FROM holds WHERE account_id = $1', [
        accountId,
      ]);
      const byJob = new Map<string, { finals: number; tokens: number }>(r.rows.map((x) => [x.request_id, x]));
      return jobs.every((j) => (byJob.get(j)?.finals ?? 0) > 0) && held.rows[0].n === 0
        ? { jobs, byJob }
        : undefined;
    },
    { timeoutMs: 20_000, what: 'every fed line settled and no hold left' },
  );
}

describe('a batch whose lines wait out a long provider pause', () => {
  beforeAll(async () => {
    stack = await startStack({
      providers: ['openai'],
      env: { BATCH_TICK_MS: '50', BATCH_MAX_IN_FLIGHT: '2', BATCH_WINDOW_SECONDS: String(WINDOW_S) },
    });
    stack.fake.configure({ provider: 'openai', chunkMs: 0, tokens: 8 });
  }, 90_000);
  afterAll(async () => {
    await stack?.stop();
  });

  it('expires at its window: waiting lines end then, never call the provider, and cost nothing', async () => {
    const { accountId, client } = await tenant();
    // Two lines are answered, then a 429 pauses the pool for 100 s: the lines fed after it wait.
    const b = await start(client, [
      line('a', 'one'),
      line('b', 'two'),
      line('c', `three ${LONG_429}`),
      line('d', 'four'),
      line('e', 'five'),
      line('f', 'six'),
    ]);
    await until(() => stack.fake.calls().some((c) => c.status === 429), {
      timeoutMs: 20_000,
      what: 'the 429',
    });
    const done = await ended(client, b.id);
    expect(done.status).toBe('expired');
    expect(done.expires_at).toBe(done.created_at + WINDOW_S);
    // Ended at its window (within the driver's tick), not when the pause lifts 100 s later.
    expect((done.expired_at ?? 0) - (done.expires_at ?? 0)).toBeLessThan(5);
    const completed = done.request_counts?.completed ?? 0;
    expect(completed).toBeGreaterThanOrEqual(2);
    expect(completed).toBeLessThan(6);
    const errors = (await (await client.files.content(done.error_file_id ?? '')).text())
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l));
    expect(errors.map((e) => e.custom_id)).toContain('c');
    expect(errors).toHaveLength(6 - completed);
    for (const e of errors) expect(e).toMatchObject({ response: null, error: { code: 'batch_expired' } });
    // Billing: each line settled once; a line that expired waiting cost nothing; no hold is left.
    const { jobs, byJob } = await billing(accountId, b.id);
    const tail = b.id.slice('batch_'.length);
    // The line that met the 429 was fed; so, at least, were the two answered before it.
    expect(jobs.length).toBeGreaterThanOrEqual(3);
    for (const j of jobs) expect(byJob.get(j)?.finals).toBe(1);
    for (const e of errors) {
      const job = `req_${tail}_${String(e.id).split('_').at(-1)}`;
      if (jobs.includes(job)) expect(byJob.get(job)?.tokens).toBe(0);
    }
    // No line calls the provider after the window, even once the pause would have lifted for it:
    // its job is off the queue. (The pause is 100 s: the jobs' absence is what is checked.)
    const after = stack.fake.calls().filter((c) => c.model !== null && c.at >= (done.expires_at ?? 0) * 1000);
    expect(after).toHaveLength(0);
    const queued = await stack.sql.query(
      `SELECT count(*)::int AS n FROM batch_lines WHERE batch_id = $1 AND state IN ('pending', 'submitted')`,
      [b.id],
    );
    expect(queued.rows[0].n).toBe(0);
  }, 60_000);
});
