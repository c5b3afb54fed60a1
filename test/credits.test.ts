import { once } from 'node:events';
import { CLEAN_LEDGER, checkLedgerInvariants } from '@faregate/db/invariants';
import { createDb } from '@faregate/db/client';
import { until } from '@faregate/testing/env';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Service, type Stack, startStack } from './support/stack.ts';

/**
 * Credits through the real services: the ingress queues a credit command, billing (its own process)
 * executes it once and records the outcome, the ingress answers from it. Billing away: 503 with a
 * retry hint, and the command is applied once billing is back.
 */
let stack: Stack;
beforeAll(async () => {
  stack = await startStack({ providers: ['openai'] });
}, 90_000);
afterAll(async () => {
  await stack?.stop();
});

/** The admin API's answers, as far as these tests read them. */
type Answer = Record<string, unknown> & {
  id: string;
  key: string;
  transaction_id: string;
  balance_micros: string;
  error: { code: string; param: string | null };
};

async function post(
  path: string,
  body: unknown,
  headers: Record<string, string> = {},
  edit: (json: string) => string = (json) => json,
) {
  const r = await fetch(`${stack.url}/admin/v1${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${stack.adminToken}`, 'content-type': 'application/json', ...headers },
    body: edit(JSON.stringify(body)),
  });
  return { status: r.status, headers: r.headers, body: (await r.json()) as Answer };
}

async function balanceMicros(account: string): Promise<bigint> {
  const r = await fetch(`${stack.url}/admin/v1/balances`, {
    headers: { authorization: `Bearer ${stack.adminToken}` },
  });
  const row = ((await r.json()) as { data: Array<Record<string, string>> }).data.find(
    (x) => x.account_id === account,
  );
  return BigInt(row?.balance_micros ?? '0');
}

async function newTenant(name: string): Promise<{ account: string; key: string }> {
  const acct = await post('/accounts', { name });
  const key = await post('/keys', { account_id: acct.body.id, name: 'k' });
  return { account: acct.body.id, key: key.body.key };
}

/** Journal transactions posted under a key (a credit posted twice would count 2). */
async function postings(key: string): Promise<number> {
  const r = await stack.sql.query(
    'SELECT count(*)::int AS n FROM journal_transactions WHERE idempotency_key = $1',
    [key],
  );
  return r.rows[0].n;
}

async function stopService(name: string): Promise<void> {
  const running = stack.services.filter(
    (s) => s.name === name && s.proc.exitCode === null && !s.proc.signalCode,
  );
  await Promise.all(
    running.map(async (s: Service) => {
      const exited = once(s.proc, 'exit');
      s.proc.kill('SIGTERM');
      await exited;
    }),
  );
}

async function expectCleanLedger(): Promise<void> {
  const { db, close } = createDb(stack.databaseUrl, { max: 1 });
  try {
    expect(await checkLedgerInvariants(db)).toEqual(CLEAN_LEDGER);
  } finally {
    await close();
  }
}

describe('credits through billing', () => {
  it('credits via the admin API, once per idempotency key, and the tenant sees the balance', async () => {
    const t = await newTenant('e2e-credit');
    const first = await post(
      '/credits',
      { account_id: t.account, amount_usd: '12.5' },
      { 'idempotency-key': 'e2e-1' },
    );
    expect(first.status).toBe(201);
    expect(first.body).toMatchObject({
      object: 'credit',
      account_id: t.account,
      amount_micros: '12500000',
      balance_micros: '12500000',
    });
    expect(first.body.transaction_id).toMatch(/^txn_/);
    const again = await post(
      '/credits',
      { account_id: t.account, amount_usd: '12.5' },
      { 'idempotency-key': 'e2e-1' },
    );
    expect(again.status).toBe(201);
    expect(again.body.transaction_id).toBe(first.body.transaction_id);
    // The same key in the body and the header is one key; two different ones are refused.
    const both = await post(
      '/credits',
      { account_id: t.account, amount_usd: '12.5', idempotency_key: 'e2e-1' },
      { 'idempotency-key': 'e2e-1' },
    );
    expect(both.body.transaction_id).toBe(first.body.transaction_id);
    const differ = await post(
      '/credits',
      { account_id: t.account, amount_usd: '12.5', idempotency_key: 'e2e-2' },
      { 'idempotency-key': 'e2e-1' },
    );
    expect(differ.status).toBe(400);
    expect(differ.body).toMatchObject({ error: { param: 'idempotency_key' } });
    // Two Idempotency-Key headers arrive joined ("h1, h2"): refused, never taken as a key of its
    // own that a retry with either one would not match (a second credit).
    const joined = await post(
      '/credits',
      { account_id: t.account, amount_usd: '12.5' },
      { 'idempotency-key': 'h1, h2' },
    );
    expect(joined.status).toBe(400);
    expect(joined.body).toMatchObject({ error: { param: 'Idempotency-Key' } });
    // Without a key: a credit of its own each time, under a key the ingress made up and shows.
    const bare = await post('/credits', { account_id: t.account, amount_usd: '0.5' });
    expect(bare.status).toBe(201);
    expect(bare.headers.get('idempotency-key')).toMatch(/^auto:/);
    expect(bare.body.balance_micros).toBe('13000000');

    // The tenant's own view, with its own key.
    const own = await fetch(`${stack.url}/v1/balance`, { headers: { authorization: `Bearer ${t.key}` } });
    expect(((await own.json()) as Record<string, string>).balance_micros).toBe('13000000');
    expect(await balanceMicros(t.account)).toBe(13_000_000n);
    expect(await postings('e2e-1')).toBe(1);

    // The same key for another credit is refused; an unknown account is a 404.
    const reused = await post(
      '/credits',
      { account_id: t.account, amount_usd: '99' },
      { 'idempotency-key': 'e2e-1' },
    );
    expect(reused.status).toBe(422);
    expect(reused.body.error.code).toBe('idempotency_key_reused');
    const missing = await post('/credits', { account_id: 'acct_nobody', amount_usd: '1' });
    expect(missing.status).toBe(404);
    expect(missing.body.error).toMatchObject({ code: 'not_found', param: 'account_id' });
    // Refused before it ran, it used up nothing: the same key then credits the right account.
    const typo = await post(
      '/credits',
      { account_id: 'acct_typo', amount_usd: '1' },
      { 'idempotency-key': 'typo-1' },
    );
    expect(typo.status).toBe(404);
    const fixed = await post(
      '/credits',
      { account_id: t.account, amount_usd: '1' },
      { 'idempotency-key': 'typo-1' },
    );
    expect(fixed.status).toBe(201);
    expect(await balanceMicros(t.account)).toBe(14_000_000n);
    // What Postgres cannot store as sent (a NUL, a lone surrogate) is refused at its field, never
    // stored changed (a lone surrogate became U+FFFD) or failed as another field.
    for (const [path, body, param] of [
      ['/credits', { account_id: '\u0000', amount_usd: '1' }, 'account_id'],
      ['/credits', { account_id: t.account, amount_usd: '1', reference: 'a\ud800b' }, 'reference'],
      ['/accounts', { name: 'a\ud800b' }, 'name'],
      ['/keys', { account_id: t.account, name: 'k\udc00' }, 'name'],
    ] as const) {
      const r = await post(path, body);
      expect({ path, status: r.status }).toEqual({ path, status: 400 });
      expect(r.body.error).toMatchObject({ type: 'invalid_request_error', param });
    }
    expect(await balanceMicros(t.account)).toBe(14_000_000n);
    // An amount as a JSON number is taken exactly (0.25), or refused where a double cannot carry it:
    // before, 12345678901.123456 was credited as …123455, and 100000000000.000001 as 100000000000.
    const number = await post('/credits', { account_id: t.account, amount_usd: 0.25 });
    expect(number.status).toBe(201);
    expect(number.body.amount_micros).toBe('250000');
    // The numbers as a client writes them (JSON text: a JS literal would lose the digits first).
    for (const amount of ['12345678901.123456', '100000000000.000001', '1e9']) {
      const r = await post('/credits', { account_id: t.account, amount_usd: 0 }, {}, (json) =>
        json.replace('"amount_usd":0', `"amount_usd":${amount}`),
      );
      expect(r.status).toBe(400);
      expect(r.body.error).toMatchObject({ type: 'invalid_request_error', param: 'amount_usd' });
      expect(JSON.stringify(r.body.error)).toContain('must be sent as a string');
    }
    const asString = await post('/credits', { account_id: t.account, amount_usd: '12345678901.123456' });
    expect(asString.body.amount_micros).toBe('12345678901123456');
    expect(await balanceMicros(t.account)).toBe(12_345_678_901_123_456n + 14_250_000n);
    await expectCleanLedger();
  });

  it('credited the bootstrap account once, and an ingress restart does not top it up again', async () => {
    const boot = await stack.sql.query(`SELECT account_id FROM api_keys WHERE name = 'bootstrap'`);
    const account = boot.rows[0].account_id as string;
    expect(await postings(`bootstrap:${account}`)).toBe(1);
    const before = await balanceMicros(account);
    expect(before).toBe(100_000_000n); // FAREGATE_BOOTSTRAP_CREDIT_USD=100; nothing here spends it

    await stopService('ingress');
    await stack.start('ingress');
    await until(async () => (await fetch(`${stack.url}/readyz`).catch(() => undefined))?.ok, {
      timeoutMs: 60_000,
      what: 'restarted ingress ready',
    });
    // Anything the restart queued is ahead of this marker in the stream: once billing answered the
    // marker, it has seen whatever the restart queued.
    const marker = await newTenant('marker');
    expect((await post('/credits', { account_id: marker.account, amount_usd: '1' })).status).toBe(201);
    expect(await postings(`bootstrap:${account}`)).toBe(1);
    expect(await balanceMicros(account)).toBe(before);
  }, 90_000);

  it('with billing stopped a credit answers 503 overloaded with retry-after, and is applied once billing is back', async () => {
    const t = await newTenant('e2e-outage');
    await stopService('billing');

    // Both wait for billing's answer at once (each wait is bounded: CREDIT_WAIT_MS).
    const [keyed, bare] = await Promise.all([
      post('/credits', { account_id: t.account, amount_usd: '3' }, { 'idempotency-key': 'outage-1' }),
      post('/credits', { account_id: t.account, amount_usd: '0.25' }),
    ]);
    expect(keyed.status).toBe(503);
    expect(keyed.body.error.code).toBe('overloaded');
    expect(Number(keyed.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(keyed.headers.get('idempotency-key')).toBe('outage-1');
    // The caller without a key learns the one its command was queued under.
    expect(bare.status).toBe(503);
    const bareKey = bare.headers.get('idempotency-key')!;
    expect(bareKey).toMatch(/^auto:/);
    // A retry while billing is still away: still 503, still one command's worth of money later.
    expect(
      (await post('/credits', { account_id: t.account, amount_usd: '3' }, { 'idempotency-key': 'outage-1' }))
        .status,
    ).toBe(503);
    expect(await balanceMicros(t.account)).toBe(0n);

    await stack.start('billing');
    await until(async () => (await balanceMicros(t.account)) === 3_250_000n, {
      timeoutMs: 60_000,
      what: 'queued credits applied by the restarted billing',
    });
    const replay = await post(
      '/credits',
      { account_id: t.account, amount_usd: '3' },
      { 'idempotency-key': 'outage-1' },
    );
    expect(replay.status).toBe(201);
    expect(replay.body).toMatchObject({ amount_micros: '3000000' });
    const bareReplay = await post(
      '/credits',
      { account_id: t.account, amount_usd: '0.25' },
      { 'idempotency-key': bareKey },
    );
    expect(bareReplay.status).toBe(201);
    expect(await balanceMicros(t.account)).toBe(3_250_000n);
    expect(await postings('outage-1')).toBe(1);
    expect(await postings(bareKey)).toBe(1);
    await expectCleanLedger();
  }, 90_000);
});

describe('a credit the ledger cannot hold', () => {
  it('is refused, and the credits after it, to any account, are applied', async () => {
    // Each is under the per-credit cap; together they pass what the ledger's int8 columns hold.
    const whale = await newTenant('whale');
    let refused: Awaited<ReturnType<typeof post>> | undefined;
    for (let i = 0; i < 12 && !refused; i++) {
      const r = await post('/credits', { account_id: whale.account, amount_usd: '999999999999.999999' });
      if (r.status !== 201) refused = r;
    }
    expect(refused?.status, JSON.stringify(refused?.body)).toBe(400);
    // It says why, naming the amount.
    expect(JSON.stringify(refused?.body)).toMatch(/ledger cannot hold/);
    expect(JSON.stringify(refused?.body)).toMatch(/amount_usd/);
    // Retried forever at the head of the queue, it used to hold back every credit behind it (503).
    const next = await newTenant('after the whale');
    const r = await post('/credits', { account_id: next.account, amount_usd: '1' });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    expect(await balanceMicros(next.account)).toBe(1_000_000n);
  }, 90_000);
});
