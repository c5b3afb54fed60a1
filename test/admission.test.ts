import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { until } from '@faregate/testing/env';
import { RawWs } from './support/raw-ws.ts';
import { type Stack, startStack } from './support/stack.ts';
import { rng } from '@faregate/testing/random';

/**
 * Admission and settlement agree (one price resolution, a prompt bound no provider exceeds, holds
 * that cover every call a job may make), and model names are never read off an object's prototype.
 */

let stack: Stack;
let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'fg-admission-'));
  const config = join(dir, 'faregate.config.json');
  // Streams the fake breaks on purpose must not open the pool's circuit.
  await writeFile(config, JSON.stringify({ providers: { openai: { circuit: { minSamples: 1_000_000 } } } }));
  stack = await startStack({
    providers: ['openai', 'anthropic'],
    // The hold covers HOLD_CALLS (default 2) calls; the workers' own cap on calls is not the subject here.
    env: { WORKER_ATTEMPTS: '2', FAREGATE_CONFIG: config },
  });
}, 90_000);
afterAll(async () => {
  await stack?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const json = (key: string) => ({ authorization: `Bearer ${key}`, 'content-type': 'application/json' });
const ask = (content: string) => [{ role: 'user' as const, content }];
type ErrorBody = { error: { message: string; type: string; param: string | null; code: string | null } };

async function admin(path: string, body: unknown) {
  const r = await fetch(`${stack.url}/admin/v1${path}`, {
    method: 'POST',
    headers: json(stack.adminToken),
    body: JSON.stringify(body),
  });
  expect(r.status).toBeLessThan(300);
  return (await r.json()) as Record<string, unknown>;
}

describe('one price resolution', () => {
  it('settles anthropic/claude-haiku-4-5 (served as claude-haiku-4-5-20251001) at its list price × tokens', async () => {
    const r = await fetch(`${stack.url}/v1/chat/completions`, {
      method: 'POST',
      headers: json(stack.apiKey),
      body: JSON.stringify({ model: 'anthropic/claude-haiku-4-5', messages: ask('price me, please') }),
    });
    expect(r.status).toBe(200);
    const id = r.headers.get('x-request-id');
    const body = (await r.json()) as { usage: { prompt_tokens: number; completion_tokens: number } };
    const rows = await until(
      async () => {
        const q = await stack.sql.query(
          'SELECT model, input_tokens, output_tokens, cost_micros::text AS cost, unpriced FROM usage_events WHERE request_id = $1',
          [id],
        );
        return q.rows.length > 0 ? q.rows : undefined;
      },
      { what: 'settlement', timeoutMs: 20_000 },
    );
    expect(rows).toHaveLength(1);
    const row = rows[0];
    expect(row.model).toBe('claude-haiku-4-5-20251001');
    expect(row.unpriced).toBe(false);
    expect(row.input_tokens).toBe(body.usage.prompt_tokens);
    expect(row.output_tokens).toBe(body.usage.completion_tokens);
    // $1 per 1M input tokens = 1 µUSD each, $5 per 1M output tokens = 5 µUSD each.
    expect(Number(row.cost)).toBe(row.input_tokens * 1 + row.output_tokens * 5);
    expect(Number(row.cost)).toBeGreaterThan(0);
  });
});

describe('model names that are Object.prototype members', () => {
  const NAMES = ['constructor', '__proto__', 'toString', 'valueOf', 'hasOwnProperty', 'openai/constructor'];

  const expectNotFound = (e: ErrorBody['error'] | undefined, name: string) =>
    expect({ name, code: e?.code, type: e?.type, param: e?.param, message: typeof e?.message }).toEqual({
      name,
      code: 'model_not_found',
      type: 'invalid_request_error',
      param: 'model',
      message: 'string',
    });

  it('answer 404 model_not_found on chat completions and jobs', async () => {
    for (const name of NAMES) {
      for (const [path, stream] of [
        ['/v1/chat/completions', false],
        ['/v1/chat/completions', true],
        ['/v1/jobs', false],
      ] as const) {
        const r = await fetch(`${stack.url}${path}`, {
          method: 'POST',
          headers: json(stack.apiKey),
          body: JSON.stringify({ model: name, messages: ask('hi'), stream }),
        });
        expect({ name, path, status: r.status }).toEqual({ name, path, status: 404 });
        expectNotFound(((await r.json()) as ErrorBody).error, name);
      }
      const m = await fetch(`${stack.url}/v1/models/${name}`, { headers: json(stack.apiKey) });
      expect({ name, status: m.status }).toEqual({ name, status: 404 });
    }
  });

  it('answer model_not_found for batch members and WebSocket submits', async () => {
    const r = await fetch(`${stack.url}/v1/jobs`, {
      method: 'POST',
      headers: json(stack.apiKey),
      body: JSON.stringify({ requests: NAMES.map((model) => ({ model, messages: ask('hi') })) }),
    });
    expect(r.status).toBe(202);
    const batch = (await r.json()) as {
      jobs: Array<{ index: number; id?: string; error?: ErrorBody['error'] }>;
    };
    expect(batch.jobs.map((j) => j.id)).toEqual(NAMES.map(() => undefined));
    for (const [i, j] of batch.jobs.entries()) expectNotFound(j.error, NAMES[i]!);

    const ws = await RawWs.open(stack.url, stack.apiKey);
    try {
      for (const name of NAMES) {
        ws.send({ op: 'submit', id: `s-${name}`, request: { model: name, messages: ask('hi') } });
        const nack = await ws.next((m) => m.id === `s-${name}`, `answer to ${name}`);
        expect(nack.type).toBe('nack');
        expectNotFound(nack.error as ErrorBody['error'], name);
      }
    } finally {
      await ws.close();
    }
  });
});

describe('holds cover what a request may cost', () => {
  /** Prompts whose tokens a characters-per-token guess gets wrong, of random sizes. */
  function prompt(rand: () => number): string {
    const n = 200 + Math.floor(rand() * 1500);
    const pick = Math.floor(rand() * 4);
    const out: string[] = [];
    for (let i = 0; i < n; i++) {
      if (pick === 0) out.push(String(Math.floor(rand() * 10)));
      else if (pick === 1) out.push(String.fromCodePoint(0x4e00 + Math.floor(rand() * 0x5200)));
      else if (pick === 2) out.push(`${String.fromCharCode(97 + Math.floor(rand() * 26))} `);
      else out.push(['budget ', 'hold ', 'settle ', 'naïve ', 'Straße ', 'тест '][Math.floor(rand() * 6)]!);
    }
    return out.join('');
  }

  it('randomized prompts against a small balance, sent until refused: the balance never goes below zero', async () => {
    const seed = Number(process.env.ADMISSION_SEED ?? Date.now() % 100_000);
    console.log(`admission seed ${seed}`);
    const rand = rng(seed);
    const acct = await admin('/accounts', { name: 'small' });
    const key = (await admin('/keys', { account_id: acct.id, name: 'k' })).key as string;
    await admin('/credits', { account_id: acct.id, amount_usd: '0.01' });

    // Every call's stream breaks midway, so every job makes WORKER_ATTEMPTS calls that produce tokens,
    // each billed at the provider's count of the prompt (the worker counts a broken stream's prompt
    // with a real tokenizer). Async jobs: no caller cancels a job whose stream restarted.
    const cut = '[[fake:{"fault":"cut_mid_stream","afterChunks":2}]]';
    const send = async () => {
      const r = await fetch(`${stack.url}/v1/jobs`, {
        method: 'POST',
        headers: json(key),
        body: JSON.stringify({
          model: 'openai/gpt-4o-mini',
          messages: ask(`${prompt(rand)} ${cut}`),
          max_tokens: 16,
        }),
      });
      const body = (await r.json()) as { id?: string };
      if (r.status === 202) return body.id;
      expect({ status: r.status, body }).toMatchObject({
        status: 402,
        body: { error: { code: 'insufficient_quota' } },
      });
      return undefined;
    };
    const ended = async (id: string) => {
      const r = await fetch(`${stack.url}/v1/jobs/${id}`, { headers: json(key) });
      const { status } = (await r.json()) as { status: string };
      return status === 'completed' || status === 'failed' || status === 'cancelled';
    };
    // Bursts of concurrent submissions until one is refused: the holds of every admitted job are
    // outstanding together, so whatever one costs beyond its hold comes out of the balance.
    const jobs: string[] = [];
    let refused = 0;
    for (let round = 0; round < 30 && refused === 0; round++) {
      const ids = await Promise.all(Array.from({ length: 8 }, send));
      for (const id of ids) {
        if (id === undefined) refused++;
        else jobs.push(id);
      }
    }
    const admitted = jobs.length;
    for (const id of jobs) await until(() => ended(id), { what: `job ${id} ended`, timeoutMs: 30_000 });
    expect(refused).toBeGreaterThan(0);
    expect(admitted).toBeGreaterThan(0);

    // Settlement: every admitted request's final event, and no hold left.
    await until(
      async () => {
        const f = await stack.sql.query(
          'SELECT count(*)::int AS n FROM usage_events WHERE account_id = $1 AND final',
          [acct.id],
        );
        const h = await stack.sql.query('SELECT count(*)::int AS n FROM holds WHERE account_id = $1', [
          acct.id,
        ]);
        return f.rows[0].n === admitted && h.rows[0].n === 0;
      },
      { what: 'settlement of every admitted request', timeoutMs: 30_000 },
    );
    const rows = await stack.sql.query(
      'SELECT count(*)::int AS calls, sum(cost_micros)::text AS cost, bool_or(unpriced) AS unpriced FROM usage_events WHERE account_id = $1 AND input_tokens > 0',
      [acct.id],
    );
    expect(rows.rows[0].unpriced).toBe(false);
    expect(rows.rows[0].calls).toBe(admitted * 2);
    const b = await fetch(`${stack.url}/admin/v1/balances`, { headers: json(stack.adminToken) });
    const mine = (
      (await b.json()) as { data: Array<{ account_id: string; balance_micros: string }> }
    ).data.find((x) => x.account_id === acct.id);
    console.log({ admitted, refused, spentMicros: rows.rows[0].cost, balanceMicros: mine?.balance_micros });
    expect({
      seed,
      balance: BigInt(mine?.balance_micros ?? '-1') >= 0n,
      spent: rows.rows[0].cost,
    }).toMatchObject({
      seed,
      balance: true,
    });
  }, 120_000);
});
