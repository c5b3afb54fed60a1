import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkLedgerInvariants } from '@faregate/db/invariants';
import { createDb } from '@faregate/db/client';
import { until } from '@faregate/testing/env';
import { type Stack, startStack } from './support/stack.ts';

let stack: Stack;
beforeAll(async () => {
  stack = await startStack({ providers: ['openai', 'anthropic'] });
}, 90_000);
afterAll(async () => {
  await stack?.stop();
});

const ask = (content: string) => [{ role: 'user' as const, content }];

/** A small deterministic PRNG so a failing run can be replayed from its seed. */
function rng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

async function admin(path: string, body: unknown) {
  const r = await fetch(`${stack.url}/admin/v1${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${stack.adminToken}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  expect(r.status).toBeLessThan(300);
  return (await r.json()) as Record<string, unknown>;
}

describe('billing through the whole system', () => {
  it('randomized traffic with faults: books balance, every usage id once, the provider call log equals the usage rows', async () => {
    const seed = Number(process.env.BILLING_E2E_SEED ?? Date.now() % 100_000);
    console.log(`billing e2e seed ${seed}`);
    const rand = rng(seed);
    const client = new OpenAI({ apiKey: stack.apiKey, baseURL: `${stack.url}/v1`, maxRetries: 0 });
    stack.fake.clearCalls();
    const faults = ['500', '503', '429'] as const;
    const jobs: Promise<unknown>[] = [];
    for (let i = 0; i < 30; i++) {
      const provider = rand() < 0.5 ? 'openai' : 'anthropic';
      const model = provider === 'openai' ? 'openai/gpt-4o-mini' : 'anthropic/claude-haiku-4-5';
      if (rand() < 0.3) {
        const fault = faults[Math.floor(rand() * faults.length)]!;
        stack.fake.script(provider, [fault === '429' ? { fault, retryAfterMs: 50 } : { fault }]);
      }
      const stream = rand() < 0.5;
      const messages = ask(`question ${i} ${'x'.repeat(Math.floor(rand() * 200))}`);
      jobs.push(
        stream
          ? (async () => {
              const s = await client.chat.completions.create({
                model,
                messages,
                stream: true,
                stream_options: { include_usage: true },
              });
              for await (const _ of s);
            })()
          : client.chat.completions.create({ model, messages }),
      );
    }
    const results = await Promise.allSettled(jobs);
    // Scripted faults are taken by whichever call comes next: a request whose every attempt drew one
    // fails with that fault, naming each attempt; anything else failing is a bug.
    for (const r of results) {
      if (r.status === 'fulfilled') continue;
      const e = r.reason as { status?: number; error?: { attempts?: { status: number | null }[] } };
      const attempts = e.error?.attempts ?? [];
      expect(attempts.length, String(r.reason)).toBeGreaterThan(0);
      expect(
        attempts.every((a) => a.status === 500 || a.status === 503 || a.status === 429),
        String(r.reason),
      ).toBe(true);
    }

    // Every provider call that produced tokens has exactly one usage row with the same tokens.
    const produced = stack.fake
      .calls()
      .filter((c) => c.model !== null && c.status === 200)
      .map((c) => `${c.provider}:${c.promptTokens}:${c.completionTokens}`)
      .sort();
    const rows = await until(
      async () => {
        const r = await stack.sql.query(
          `SELECT provider, input_tokens, output_tokens FROM usage_events WHERE input_tokens + output_tokens > 0`,
        );
        return r.rows.length >= produced.length ? r.rows : undefined;
      },
      { what: 'settlement of every call', timeoutMs: 20_000 },
    );
    expect(rows.map((r) => `${r.provider}:${r.input_tokens}:${r.output_tokens}`).sort()).toEqual(produced);

    const { db, close } = createDb(stack.databaseUrl, { max: 2 });
    try {
      const v = await checkLedgerInvariants(db);
      expect(v.unbalancedTransactions).toEqual([]);
      expect(v.globalSumMicros).toBe(0n);
      expect(v.balanceDrift).toEqual([]);
      expect(v.misSettledEvents).toEqual([]);
      expect(v.keySpendDrift).toEqual([]);
    } finally {
      await close();
    }
    // One final event per request, and no hold left behind once everything settled.
    const finals = await stack.sql.query(
      'SELECT request_id, count(*)::int AS n FROM usage_events WHERE final GROUP BY 1 HAVING count(*) <> 1',
    );
    expect(finals.rows).toEqual([]);
    const holds = await until(
      async () => {
        const h = await stack.sql.query('SELECT count(*)::int AS n FROM holds');
        return h.rows[0].n === 0 ? true : undefined;
      },
      { what: 'holds released' },
    );
    expect(holds).toBe(true);
  }, 120_000);

  it('a stream the provider cuts is still billed (estimated), and a client that disconnects is billed for what was generated', async () => {
    const client = new OpenAI({ apiKey: stack.apiKey, baseURL: `${stack.url}/v1`, maxRetries: 0 });
    // Every attempt cut after a few chunks: the caller gets an error, each attempt is billed.
    stack.fake.script(
      'openai',
      Array.from({ length: 3 }, () => ({ fault: 'cut_mid_stream' as const, afterChunks: 4 })),
    );
    const s = await client.chat.completions.create({
      model: 'openai/gpt-4o-mini',
      messages: ask('cut me'),
      stream: true,
    });
    let id = '';
    const err = await (async () => {
      for await (const c of s) id = c.id;
    })().catch((e) => e);
    expect(err).toBeInstanceOf(Error);
    const rows = await until(
      async () => {
        const r = await stack.sql.query(
          'SELECT output_tokens, outcome, final FROM usage_events WHERE request_id = $1 ORDER BY attempt',
          [id],
        );
        return r.rows.some((x) => x.final) ? r.rows : undefined;
      },
      { what: 'cut stream settled' },
    );
    expect(rows[0].output_tokens).toBeGreaterThan(0);
    expect(rows.filter((r) => r.final)).toHaveLength(1);
    // The caller's stream ended at the first restart after content, which cancels the job: scripted
    // cuts it did not reach must not hit the next request.
    stack.fake.reset();

    // The caller disconnects mid-stream: generation stops, what was generated is billed.
    stack.fake.configure({ provider: 'openai', chunkMs: 30, tokens: 200 });
    const ctrl = new AbortController();
    const s2 = await client.chat.completions.create(
      { model: 'openai/gpt-4o-mini', messages: ask('long'), stream: true },
      { signal: ctrl.signal },
    );
    let id2 = '';
    let chunks = 0;
    await (async () => {
      for await (const c of s2) {
        id2 = c.id;
        if (++chunks === 5) ctrl.abort();
      }
    })().catch(() => {});
    const r2 = await until(
      async () => {
        const r = await stack.sql.query(
          'SELECT output_tokens, outcome, final FROM usage_events WHERE request_id = $1',
          [id2],
        );
        return r.rows.length ? r.rows : undefined;
      },
      { what: 'cancelled stream settled' },
    );
    stack.fake.configure({ provider: 'openai', chunkMs: 0, tokens: 12 });
    expect(r2).toHaveLength(1);
    expect(r2[0]).toMatchObject({ outcome: 'cancelled', final: true });
    expect(r2[0].output_tokens).toBeGreaterThan(0);
    expect(r2[0].output_tokens).toBeLessThan(200);
  }, 60_000);

  it('fifty concurrent requests against a balance that covers ten: ten admitted, the rest 402', async () => {
    const acct = await admin('/accounts', { name: 'small' });
    const key = await admin('/keys', { account_id: acct.id, name: 'k' });
    // gpt-4o-mini: max_tokens 1000 × $0.60/M = $0.0006 output, plus the prompt's byte bound at the input
    // price → ~$0.00061 per call; the hold covers HOLD_CALLS (2) calls → ~$0.00122 each.
    await admin('/credits', { account_id: acct.id, amount_usd: '0.0125' });
    // The admitted ones must still be running when the last of the fifty is admitted: one that
    // finished and settled frees its hold (its actual cost is far below it), and a late arrival may
    // then be admitted, rightly. Fifty admissions can take a second on a loaded machine (this key's
    // first requests, exact holds on Postgres connections the pool opens for the burst).
    stack.fake.configure({ provider: 'openai', firstByteMs: 10_000 });
    const client = new OpenAI({ apiKey: key.key as string, baseURL: `${stack.url}/v1`, maxRetries: 0 });
    const results = await Promise.allSettled(
      Array.from({ length: 50 }, () =>
        client.chat.completions.create({
          model: 'openai/gpt-4o-mini',
          messages: ask('hi'),
          max_tokens: 1000,
        }),
      ),
    );
    stack.fake.configure({ provider: 'openai', firstByteMs: 0 });
    const ok = results.filter((r) => r.status === 'fulfilled');
    const refused = results
      .filter((r) => r.status === 'rejected')
      .map((r) => (r as PromiseRejectedResult).reason);
    expect(ok).toHaveLength(10);
    expect(refused).toHaveLength(40);
    for (const e of refused) {
      expect(e).toBeInstanceOf(OpenAI.APIError);
      expect(e.status).toBe(402);
      expect(e.code).toBe('insufficient_quota');
    }
  }, 60_000);

  it('usage and balance are visible to the caller, and only their own', async () => {
    const r = await fetch(`${stack.url}/v1/usage?group_by=model`, {
      headers: { authorization: `Bearer ${stack.apiKey}` },
    });
    expect(r.status).toBe(200);
    const body = (await r.json()) as Record<string, unknown>;
    expect(JSON.stringify(body)).toContain('gpt-4o-mini');
    const b = await fetch(`${stack.url}/v1/balance`, {
      headers: { authorization: `Bearer ${stack.apiKey}` },
    });
    expect(b.status).toBe(200);
    const acct = await admin('/accounts', { name: 'other' });
    const key = await admin('/keys', { account_id: acct.id, name: 'k2' });
    const other = await fetch(`${stack.url}/v1/usage?group_by=model`, {
      headers: { authorization: `Bearer ${key.key}` },
    });
    expect(JSON.stringify(await other.json())).not.toContain('gpt-4o-mini');
  });
});
