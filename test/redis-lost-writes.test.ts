import { Redis } from 'ioredis';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDb } from '@faregate/db/client';
import { CLEAN_LEDGER, checkLedgerInvariants } from '@faregate/db/invariants';
import { makeKeys, usagePartition } from '@faregate/queue/keys';
import { until } from '@faregate/testing/env';
import { OwnRedis } from './chaos/harness.ts';
import { freePort, type Stack, startStack } from './support/stack.ts';

/**
 * Redis loses its last writes (a kill -9 with `appendfsync everysec`, or a failover to a replica
 * that lagged) after billing read a request's usage from them: the request's answer went out, its
 * success was settled in Postgres, and Redis comes back not knowing the request ended. The gateway
 * runs it again (an async job's result lives only in Redis); that second call's final event must
 * not be charged: the caller asked once. It is recorded (`rerun_calls`: what the gateway paid the
 * provider and did not charge), the request stays billed once, and its hold is released once.
 *
 * The loss is made exact: the Redis here has no AOF; a snapshot is taken while the provider is
 * answering, and a kill -9 brings Redis back to it (every write after it is lost).
 */

let stack: Stack;
let redis: OwnRedis;
let client: OpenAI;
// Each answer takes a second or so: the snapshot lands while the provider is answering.
const SLOW = '[[fake:{"fault":"slow_stream","chunkMs":150,"tokens":8}]]';
const json = (key: string) => ({ authorization: `Bearer ${key}`, 'content-type': 'application/json' });

beforeAll(async () => {
  redis = new OwnRedis(await freePort(), 'snapshots');
  await redis.start();
  stack = await startStack({
    providers: ['openai'],
    redisUrl: redis.url,
    // A fast-lane run whose lease lapsed is swept to the queue in a few seconds.
    env: { WORKER_LOCK_MS: '2000', WORKER_STALLED_INTERVAL_MS: '1000' },
  });
  client = new OpenAI({ apiKey: stack.apiKey, baseURL: `${stack.url}/v1`, maxRetries: 0 });
}, 120_000);

afterAll(async () => {
  await stack?.stop();
  await redis?.stop();
});

const chatCalls = () => stack.fake.calls().filter((c) => c.provider === 'openai' && c.model !== null).length;

type Row = { id: string; outcome: string; final: boolean; cost: string };
const usageRows = async (requestId: string) =>
  (
    await stack.sql.query<Row>(
      'SELECT id, outcome, final, cost_micros::text AS cost FROM usage_events WHERE request_id = $1 ORDER BY id',
      [requestId],
    )
  ).rows;
const rerunRows = async (requestId: string) =>
  (
    await stack.sql
      .query<{ id: string; outcome: string; cost: string }>(
        'SELECT id, outcome, cost_micros::text AS cost FROM rerun_calls WHERE request_id = $1',
        [requestId],
      )
      // (Before the table: the re-run's call is in usage_events.)
      .catch(() => ({ rows: [] }))
  ).rows;
const balance = async () =>
  BigInt(
    (
      await stack.sql.query<{ b: string }>(
        `SELECT balance_micros::text AS b FROM ledger_accounts
          WHERE id = (SELECT 'tenant:' || account_id FROM api_keys ORDER BY created_at LIMIT 1)`,
      )
    ).rows[0]?.b ?? '0',
  );

/**
 * Runs `start` (a request whose call is slow), snapshots Redis once the provider is answering it,
 * waits for `settled` (its answer out and its success settled), then loses every write since the
 * snapshot; returns once the re-run's call was made and settled.
 */
async function loseTheEnd(start: () => Promise<string>, ended: (id: string) => Promise<void>) {
  const callsBefore = chatCalls();
  stack.fake.resetPeakInFlight();
  const id = start();
  await until(() => stack.fake.peakInFlight('openai') >= 1, { what: 'the provider answering' });
  await redis.snapshot();
  const requestId = await id;
  await ended(requestId);
  const settled = await until(
    async () => {
      const rows = await usageRows(requestId);
      return rows.some((r) => r.outcome === 'success') ? rows : undefined;
    },
    { what: 'the success settled' },
  );
  expect(settled.map((r) => [r.outcome, r.final])).toEqual([['success', true]]);
  const charged = await balance();

  await redis.restart(100);
  // Redis no longer knows the request ended: the request runs again, and that call is settled.
  await until(() => chatCalls() >= callsBefore + 2, { timeoutMs: 30_000, what: 'the re-run called' });
  await until(async () => (await rerunRows(requestId)).length + (await usageRows(requestId)).length >= 2, {
    timeoutMs: 30_000,
    what: "the re-run's call settled",
  });
  return { requestId, first: settled[0]!, charged };
}

describe('Redis loses the writes that ended a request', () => {
  it('an interactive answer: the re-run Redis makes is recorded, not charged; the request stays billed once', async () => {
    let requestId: string | undefined;
    const { first, charged } = await loseTheEnd(
      async () => {
        const { data, response } = await client.chat.completions
          .create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: `${SLOW} once` }] })
          .withResponse();
        expect(data.choices[0]?.message.content).toBeTruthy();
        requestId = response.headers.get('x-request-id') ?? '';
        return requestId;
      },
      async () => {},
    );
    expect(requestId).toBeDefined();
    const rows = await usageRows(requestId!);
    expect(rows).toEqual([first]);
    const reruns = await rerunRows(requestId!);
    expect(reruns).toHaveLength(1);
    expect(reruns[0]!.outcome).toBe('success');
    expect(BigInt(reruns[0]!.cost)).toBeGreaterThan(0n);
    expect(await balance()).toBe(charged);
    // The operator sees it in the spend report, next to what was charged.
    const spend = (await (
      await fetch(`${stack.url}/admin/v1/spend?group=model&days=1`, {
        headers: { authorization: `Bearer ${stack.adminToken}` },
      })
    ).json()) as { data: Array<{ group: string; rerun_calls: number; rerun_cost_micros: string }> };
    const row = spend.data.find((r) => r.group === 'openai/gpt-4o-mini');
    expect(row?.rerun_calls).toBe(1);
    expect(row?.rerun_cost_micros).toBe(reruns[0]!.cost);
    const { db, close } = createDb(stack.databaseUrl, { max: 1 });
    try {
      expect(await checkLedgerInvariants(db)).toEqual(CLEAN_LEDGER);
    } finally {
      await close();
    }
  }, 90_000);

  it('an async job: it completes again with its result, billed once', async () => {
    const { requestId, first, charged } = await loseTheEnd(
      async () => {
        const r = await fetch(`${stack.url}/v1/jobs`, {
          method: 'POST',
          headers: json(stack.apiKey),
          body: JSON.stringify({
            model: 'gpt-4o-mini',
            messages: [{ role: 'user', content: `${SLOW} job` }],
          }),
        });
        expect(r.status).toBe(202);
        return ((await r.json()) as { id: string }).id;
      },
      async (id) => {
        await until(
          async () => {
            const r = await fetch(`${stack.url}/v1/jobs/${id}`, { headers: json(stack.apiKey) });
            return ((await r.json()) as { status: string }).status === 'completed';
          },
          { what: 'the job completed' },
        );
      },
    );
    // The job's record after the loss: it completes again (its result was lost with the writes).
    const job = await until(
      async () => {
        const r = await fetch(`${stack.url}/v1/jobs/${requestId}`, { headers: json(stack.apiKey) });
        const body = (await r.json()) as {
          status: string;
          result?: { choices: Array<{ message: { content: string } }> };
        };
        return body.status === 'completed' ? body : undefined;
      },
      { timeoutMs: 30_000, what: 'the job completed again' },
    );
    expect(job.result?.choices[0]?.message.content).toBeTruthy();
    expect(await usageRows(requestId)).toEqual([first]);
    expect(await rerunRows(requestId)).toHaveLength(1);
    expect(await balance()).toBe(charged);
  }, 90_000);
});

describe("Redis loses an Idempotency-Key's record", () => {
  const keyed = (key: string, content: string) =>
    fetch(`${stack.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { ...json(stack.apiKey), 'idempotency-key': key },
      body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content }] }),
    });
  const settledFinal = (requestId: string) =>
    until(
      async () => {
        const rows = await usageRows(requestId);
        return rows.some((r) => r.final) ? rows : undefined;
      },
      { what: 'the final event settled' },
    );
  /** Billing has read and acknowledged everything in the request's usage stream. */
  async function billingCaughtUp(requestId: string): Promise<void> {
    const stream = makeKeys(stack.prefix).usage(usagePartition(requestId));
    const r = new Redis(redis.url, { lazyConnect: true });
    await r.connect();
    const id = (s: unknown) => String(s).split('-').map(Number) as [number, number];
    const atOrPast = (a: unknown, b: unknown) => {
      const [x, y] = [id(a), id(b)];
      return x[0] > y[0] || (x[0] === y[0] && x[1] >= y[1]);
    };
    const field = (list: unknown[], name: string) => list[list.indexOf(name) + 1];
    try {
      await until(
        async () => {
          const info = (await r.xinfo('STREAM', stream)) as unknown[];
          const groups = (await r.xinfo('GROUPS', stream)) as unknown[][];
          const g = groups.find((x) => field(x, 'name') === 'billing');
          if (!g) return undefined;
          return Number(field(g, 'pending')) === 0 &&
            atOrPast(field(g, 'last-delivered-id'), field(info, 'last-generated-id'))
            ? true
            : undefined;
        },
        { what: 'billing caught up with the usage stream' },
      );
    } finally {
      r.disconnect();
    }
  }

  it('the retry after the loss runs again under the same request id, and is not charged again', async () => {
    // Before the request: the loss takes every trace of it from Redis (record, job, answer).
    await redis.snapshot();
    const callsBefore = chatCalls();
    const first = await keyed('lost-key-1', 'Name a river.');
    expect(first.status).toBe(200);
    const requestId = first.headers.get('x-request-id') ?? '';
    const settled = await settledFinal(requestId);
    const charged = await balance();

    await redis.restart(100);
    // Redis no longer knows the key: the request runs again, as the same request.
    const again = await keyed('lost-key-1', 'Name a river.');
    expect(again.status).toBe(200);
    expect(again.headers.get('x-request-id')).toBe(requestId);
    expect(((await again.json()) as { id: string }).id).toBe(requestId);
    expect(chatCalls()).toBe(callsBefore + 2);
    await billingCaughtUp(requestId);
    // Billed once: the first call's settlement stands, the second charges nothing.
    expect(await usageRows(requestId)).toEqual(settled);
    expect(await balance()).toBe(charged);
    // From now on the key replays that answer.
    const replay = await keyed('lost-key-1', 'Name a river.');
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect(replay.headers.get('x-request-id')).toBe(requestId);
    expect(chatCalls()).toBe(callsBefore + 2);
  }, 60_000);

  it('after the loss the same key with another body is still a 422, and leaves the key to its body', async () => {
    await redis.snapshot();
    const first = await keyed('lost-key-2', 'Name a mountain.');
    expect(first.status).toBe(200);
    const requestId = first.headers.get('x-request-id') ?? '';
    await settledFinal(requestId);
    await redis.restart(100);
    const other = await keyed('lost-key-2', 'Name a desert.');
    expect(other.status).toBe(422);
    expect(((await other.json()) as { error: { code: string } }).error.code).toBe('idempotency_key_reused');
    const again = await keyed('lost-key-2', 'Name a mountain.');
    expect(again.status).toBe(200);
    expect(again.headers.get('x-request-id')).toBe(requestId);
  }, 60_000);

  it('an async job: the retry after the loss is the same job, completed again, billed once', async () => {
    const submit = () =>
      fetch(`${stack.url}/v1/jobs`, {
        method: 'POST',
        headers: { ...json(stack.apiKey), 'idempotency-key': 'lost-job-1' },
        body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Name a lake.' }] }),
      });
    const completed = (id: string) =>
      until(
        async () => {
          const r = await fetch(`${stack.url}/v1/jobs/${id}`, { headers: json(stack.apiKey) });
          return r.status === 200 && ((await r.json()) as { status: string }).status === 'completed'
            ? true
            : undefined;
        },
        { what: `job ${id} completed` },
      );
    await redis.snapshot();
    const first = await submit();
    expect(first.status).toBe(202);
    const { id } = (await first.json()) as { id: string };
    await completed(id);
    const settled = await settledFinal(id);
    const charged = await balance();
    await redis.restart(100);
    const again = await submit();
    expect(again.status).toBe(202);
    expect(((await again.json()) as { id: string }).id).toBe(id);
    await completed(id);
    await billingCaughtUp(id);
    expect(await usageRows(id)).toEqual(settled);
    expect(await balance()).toBe(charged);
  }, 60_000);

  it('a batch create: the retry answers with the batch the first create made, and makes none', async () => {
    const form = new FormData();
    form.append('purpose', 'batch');
    const line = JSON.stringify({
      custom_id: 'a',
      method: 'POST',
      url: '/v1/chat/completions',
      body: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] },
    });
    form.append('file', new Blob([`${line}\n`]), 'in.jsonl');
    const file = (await (
      await fetch(`${stack.url}/v1/files`, {
        method: 'POST',
        headers: { authorization: `Bearer ${stack.apiKey}` },
        body: form,
      })
    ).json()) as { id: string };
    const create = () =>
      fetch(`${stack.url}/v1/batches`, {
        method: 'POST',
        headers: { ...json(stack.apiKey), 'idempotency-key': 'lost-batch-1' },
        body: JSON.stringify({
          input_file_id: file.id,
          endpoint: '/v1/chat/completions',
          completion_window: '24h',
        }),
      });
    await redis.snapshot();
    const first = await create();
    expect(first.status).toBe(200);
    const batch = (await first.json()) as { id: string };
    await redis.restart(100);
    const again = await create();
    expect(again.status).toBe(200);
    expect(((await again.json()) as { id: string }).id).toBe(batch.id);
    const made = await stack.sql.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM batches WHERE input_file_id = $1',
      [file.id],
    );
    expect(made.rows[0]?.n).toBe(1);
  }, 60_000);
});
