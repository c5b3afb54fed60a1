import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { until } from '@faregate/testing/env';
import { type Stack, startStack } from './support/stack.ts';

/**
 * A batch's cancel is in force when it is answered: no line fed to a pool starts a provider call
 * after it, even though the batch driver acts on the cancel only at its next step (a second here).
 */
let stack: Stack;
const CONCURRENCY = 2;
const LINES = 200;
beforeAll(async () => {
  // Many lines fed and waiting in the pool's queue behind two worker slots that free every ~40 ms;
  // the driver steps the batch once a second.
  stack = await startStack({
    providers: ['openai'],
    env: {
      BATCH_MAX_IN_FLIGHT: String(LINES),
      BATCH_TICK_MS: '1000',
      WORKER_CONCURRENCY: String(CONCURRENCY),
    },
  });
  stack.fake.configure({ provider: 'openai', tokens: 4, chunkMs: 10 });
}, 90_000);
afterAll(async () => {
  await stack?.stop();
});

const headers = () => ({ authorization: `Bearer ${stack.apiKey}`, 'content-type': 'application/json' });
const chatCalls = () => stack.fake.calls().filter((c) => c.model !== null).length;

describe('a batch cancel', () => {
  it.each(['job batch', 'Batch API'] as const)(
    '(%s) starts no line after it is answered; lines under way finish, the rest end cancelled unbilled',
    async (kind) => {
      const before = chatCalls();
      let id: string;
      let cancelPath: string;
      if (kind === 'job batch') {
        const r = await fetch(`${stack.url}/v1/jobs`, {
          method: 'POST',
          headers: headers(),
          body: JSON.stringify({
            requests: Array.from({ length: LINES }, (_, i) => ({
              model: 'gpt-4o-mini',
              messages: [{ role: 'user', content: `m${i}` }],
            })),
          }),
        });
        expect(r.status).toBe(202);
        id = ((await r.json()) as { id: string }).id;
        cancelPath = `/v1/jobs/batches/${id}/cancel`;
      } else {
        const lines = Array.from({ length: LINES }, (_, i) =>
          JSON.stringify({
            custom_id: `r${i}`,
            method: 'POST',
            url: '/v1/chat/completions',
            body: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: `b${i}` }] },
          }),
        ).join('\n');
        const form = new FormData();
        form.set('purpose', 'batch');
        form.set('file', new Blob([lines]), 'in.jsonl');
        const f = await fetch(`${stack.url}/v1/files`, {
          method: 'POST',
          headers: { authorization: `Bearer ${stack.apiKey}` },
          body: form,
        });
        expect(f.status).toBe(200);
        const file = ((await f.json()) as { id: string }).id;
        const b = await fetch(`${stack.url}/v1/batches`, {
          method: 'POST',
          headers: headers(),
          body: JSON.stringify({
            input_file_id: file,
            endpoint: '/v1/chat/completions',
            completion_window: '24h',
          }),
        });
        expect(b.status).toBe(200);
        id = ((await b.json()) as { id: string }).id;
        cancelPath = `/v1/batches/${id}/cancel`;
      }
      // Running: some lines called, most fed and waiting for a worker slot.
      await until(async () => (chatCalls() - before >= 4 ? true : undefined), {
        timeoutMs: 20_000,
        what: 'the first lines to run',
      });
      const c = await fetch(`${stack.url}${cancelPath}`, { method: 'POST', headers: headers() });
      expect(c.status).toBe(200);
      expect(((await c.json()) as { status: string }).status).toBe('cancelling');
      const atCancel = chatCalls();
      await until(
        async () =>
          (await stack.sql.query('SELECT 1 FROM batches WHERE id = $1 AND status = $2', [id, 'cancelled']))
            .rowCount === 1 || undefined,
        { timeoutMs: 30_000, what: 'the batch to end cancelled' },
      );
      // Only calls already under way when the cancel was answered (at most a worker's slots, each
      // taken just before it) reached the provider afterwards.
      expect(chatCalls() - atCancel).toBeLessThanOrEqual(CONCURRENCY);
      const lines = await stack.sql.query<{ state: string; n: number }>(
        'SELECT state, count(*)::int AS n FROM batch_lines WHERE batch_id = $1 GROUP BY state',
        [id],
      );
      const by = Object.fromEntries(lines.rows.map((r) => [r.state, r.n]));
      expect(by.cancelled ?? 0).toBeGreaterThan(LINES / 2);
      // Every line that reached the provider ended with its answer; none was cut or lost.
      const called = chatCalls() - before;
      expect(Object.values(by).reduce((a, n) => a + n, 0)).toBe(LINES);
      expect(by.completed ?? 0).toBe(called);
      expect(by.pending ?? 0).toBe(0);
      expect(by.submitted ?? 0).toBe(0);
    },
  );
});
