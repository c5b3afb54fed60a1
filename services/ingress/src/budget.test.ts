import { once } from 'node:events';
import { createServer, type Socket } from 'node:net';
import { GatewayError } from '@faregate/contracts/errors';
import { addCredit, createAccount, createApiKey, getBalance } from '@faregate/db/accounts';
import { createDb, type Db } from '@faregate/db/client';
import { runMigrations } from '@faregate/db/migrate';
import { freshDatabase, until } from '@faregate/testing/env';
import { TcpProxy } from '@faregate/testing/tcp-proxy';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isDbUnavailable } from '@faregate/db/unavailable';
import { Budget, type BudgetOptions } from './budget.ts';

let db: Db;
let dbUrl: string;
let close: () => Promise<void>;
let drop: () => Promise<void>;
const budgets: Budget[] = [];

beforeAll(async () => {
  const fresh = await freshDatabase();
  drop = fresh.drop;
  dbUrl = fresh.url;
  await runMigrations(fresh.url);
  ({ db, close } = createDb(fresh.url, { max: 20 }));
});
afterAll(async () => {
  for (const b of budgets) await b.close();
  await close?.();
  await drop?.();
});

const OPTS: BudgetOptions = {
  leaseRequests: 64,
  leaseMaxMicros: 1_000_000n,
  leaseMinRequests: 16,
  leaseTtlMs: 30_000,
  idleMs: 60_000,
  requestTimeoutMs: 60_000,
};
function budget(opts: Partial<BudgetOptions> = {}, on: Db = db): Budget {
  const b = new Budget(on, { ...OPTS, ...opts });
  budgets.push(b);
  return b;
}
async function funded(micros: bigint) {
  const { id } = await createAccount(db, { name: 't' });
  if (micros > 0n) await addCredit(db, { accountId: id, amountMicros: micros });
  const key = await createApiKey(db, { accountId: id, name: 'k' });
  return { accountId: id, keyId: key.id };
}
const holdRows = async (accountId: string) =>
  (
    await db.$client.query<{ id: string; amount: string }>(
      'SELECT request_id AS id, amount_micros::text AS amount FROM holds WHERE account_id = $1',
      [accountId],
    )
  ).rows;
const deadline = () => Date.now() + 60_000;

describe('budget leases', () => {
  it('admits many requests from one lease row, and gives back what was not used', async () => {
    const { accountId, keyId } = await funded(10_000_000n);
    const b = budget();
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        b.admit({
          requestId: `r${i}`,
          accountId: accountId,
          keyId: keyId,
          micros: 1_000n,
          deadline: deadline(),
        }),
      ),
    );
    expect(results.every((r) => r.ok && r.reservation.leased)).toBe(true);
    // One row for all 20 requests (the lease, 64 requests' worth), not one per request.
    const rows = await holdRows(accountId);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ amount: '64000' });
    expect(rows[0]!.id).toMatch(/^lease_/);
    const first = results[0]!;
    if (!first.ok || !first.reservation.leased) throw new Error('unreachable');
    expect(first.reservation.hold).toEqual({ id: rows[0]!.id, micros: '1000' });

    // A refused request's share goes back to the lease; closing gives back the unused rest and
    // keeps the shares of the 19 requests still in flight.
    await b.release(first.reservation);
    await b.close();
    expect(await holdRows(accountId)).toEqual([{ id: rows[0]!.id, amount: '19000' }]);
    expect((await getBalance(db, accountId)).availableMicros).toBe(10_000_000n - 19_000n);
  });

  it('is exact when the balance cannot cover a lease: 50 concurrent requests, balance for 10', async () => {
    const { accountId, keyId } = await funded(10_000n);
    const b = budget();
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        b.admit({
          requestId: `x${i}`,
          accountId: accountId,
          keyId: keyId,
          micros: 1_000n,
          deadline: deadline(),
        }),
      ),
    );
    expect(results.filter((r) => r.ok)).toHaveLength(10);
    expect(results.filter((r) => !r.ok && r.reason === 'insufficient_balance')).toHaveLength(40);
    // Each admitted request holds its own row, keyed by its id.
    const rows = await holdRows(accountId);
    expect(rows).toHaveLength(10);
    expect(rows.every((r) => r.amount === '1000' && r.id.startsWith('x'))).toBe(true);
  });

  it("one key's lease does not starve another key of the account: its rest goes back when the other runs short", async () => {
    // Balance for 100 requests of 1,000; key A takes a lease of 64 with one request.
    const { accountId, keyId } = await funded(100_000n);
    const other = await createApiKey(db, { accountId, name: 'b' });
    const b = budget();
    const a = await b.admit({ requestId: 'a0', accountId, keyId, micros: 1_000n, deadline: deadline() });
    expect(a.ok).toBe(true);
    expect((await getBalance(db, accountId)).availableMicros).toBe(36_000n);
    // Key B, 60 concurrent requests: all but A's one admitted request's worth fits.
    const results = await Promise.all(
      Array.from({ length: 60 }, (_, i) =>
        b.admit({ requestId: `b${i}`, accountId, keyId: other.id, micros: 1_000n, deadline: deadline() }),
      ),
    );
    expect(results.filter((r) => r.ok)).toHaveLength(60);
    // And the balance is still exact: 61 requests held, 39 left.
    expect((await getBalance(db, accountId)).availableMicros).toBe(39_000n);
  });

  it('admits exactly what the balance covers when it spans more than a lease', async () => {
    // 100 requests' worth: a first lease of 64, then exact holds for the 36 that remain.
    const { accountId, keyId } = await funded(100_000n);
    const b = budget();
    const results = await Promise.all(
      Array.from({ length: 150 }, (_, i) =>
        b.admit({
          requestId: `y${i}`,
          accountId: accountId,
          keyId: keyId,
          micros: 1_000n,
          deadline: deadline(),
        }),
      ),
    );
    expect(results.filter((r) => r.ok)).toHaveLength(100);
    expect((await getBalance(db, accountId)).availableMicros).toBe(0n);
  });

  it('leases requests whose worst case is past the cap: at least leaseMinRequests of them per lease', async () => {
    // A request without max_tokens reserves its route's worst case: here 400,000 µUSD, so 64 of them
    // are far past the 1,000,000 cap. Capped at 1,000,000 a lease would cover two requests (a place
    // and a give-back per two requests); the floor makes it cover 16.
    const { accountId, keyId } = await funded(100_000_000n);
    const b = budget();
    const ask = (i: number) =>
      b.admit({ requestId: `big${i}`, accountId, keyId, micros: 400_000n, deadline: deadline() });
    const results = await Promise.all(Array.from({ length: 40 }, (_, i) => ask(i)));
    expect(results.every((r) => r.ok && r.reservation.leased)).toBe(true);
    const leases = new Set(results.map((r) => (r.ok && r.reservation.leased ? r.reservation.hold.id : '')));
    // 40 requests, 16 per lease: 3 leases (not 20).
    expect(leases.size).toBe(3);
    const rows = (await holdRows(accountId)).filter((x) => x.id.startsWith('lease_'));
    // Each placed at 16 requests' worth; the rotated ones gave back nothing (used whole).
    expect(rows.map((x) => x.amount).sort()).toEqual(['6400000', '6400000', '6400000']);

    // The floor never exceeds leaseRequests, and leaseRequests = 1 stays exact.
    const { accountId: a2, keyId: k2 } = await funded(100_000_000n);
    const few = budget({ leaseRequests: 4 });
    const r4 = await Promise.all(
      Array.from({ length: 4 }, (_, i) =>
        few.admit({ requestId: `f${i}`, accountId: a2, keyId: k2, micros: 400_000n, deadline: deadline() }),
      ),
    );
    expect(r4.every((r) => r.ok && r.reservation.leased)).toBe(true);
    const fourLeases = new Set(r4.map((r) => (r.ok && r.reservation.leased ? r.reservation.hold.id : '')));
    expect(fourLeases.size).toBe(1);
    // (The lease is spent: the next one may be placed ahead meanwhile.)
    const fourRows = await holdRows(a2);
    expect(fourRows.find((x) => fourLeases.has(x.id))?.amount).toBe('1600000');

    // An account that cannot cover 16 of them is admitted exactly, as far as its balance goes.
    const { accountId: a3, keyId: k3 } = await funded(1_000_000n);
    const tight = budget();
    const r3 = await Promise.all(
      Array.from({ length: 4 }, (_, i) =>
        tight.admit({ requestId: `t${i}`, accountId: a3, keyId: k3, micros: 400_000n, deadline: deadline() }),
      ),
    );
    expect(r3.filter((r) => r.ok)).toHaveLength(2);
    expect(r3.filter((r) => r.ok && !r.reservation.leased)).toHaveLength(2);
  });

  it('respects a key spend limit, and gives an idle lease back on its own', async () => {
    const { accountId, keyId } = await funded(10_000_000n);
    await db.$client.query('UPDATE api_keys SET spend_limit_micros = 5000 WHERE id = $1', [keyId]);
    const b = budget({ idleMs: 200 });
    const limited = await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        b.admit({
          requestId: `k${i}`,
          accountId: accountId,
          keyId: keyId,
          micros: 1_000n,
          deadline: deadline(),
        }),
      ),
    );
    expect(limited.filter((r) => r.ok)).toHaveLength(5);
    expect(limited.filter((r) => !r.ok && r.reason === 'key_limit')).toHaveLength(3);

    const other = await createApiKey(db, { accountId, name: 'unlimited' });
    const r = await b.admit({
      requestId: 'idle',
      accountId: accountId,
      keyId: other.id,
      micros: 1_000n,
      deadline: deadline(),
    });
    expect(r.ok && r.reservation.leased).toBe(true);
    // Unused for idleMs: the rest goes back, only the admitted request's share stays held.
    await until(
      async () => {
        const rows = await holdRows(accountId);
        return rows.some((x) => x.id.startsWith('lease_') && x.amount === '1000');
      },
      { what: 'idle lease given back' },
    );
  });

  it('with leases turned off, every request holds its own row', async () => {
    const { accountId, keyId } = await funded(10_000_000n);
    const b = budget({ leaseRequests: 1 });
    const r = await b.admit({
      requestId: 'own',
      accountId: accountId,
      keyId: keyId,
      micros: 2_500n,
      deadline: deadline(),
    });
    expect(r).toEqual({ ok: true, reservation: { leased: false, requestId: 'own' } });
    expect(await holdRows(accountId)).toEqual([{ id: 'own', amount: '2500' }]);
    if (r.ok) await b.release(r.reservation);
    expect(await holdRows(accountId)).toEqual([]);
  });
});

describe('budget when Postgres is unreachable', () => {
  const proxies: TcpProxy[] = [];
  const pools: (() => Promise<void>)[] = [];
  afterAll(async () => {
    for (const b of budgets) await b.close();
    for (const p of proxies) await p.stop();
    for (const c of pools) await c();
  });
  /** A Db whose connections go through a proxy the test can cut. */
  async function proxied(): Promise<{ proxy: TcpProxy; pdb: Db }> {
    const proxy = new TcpProxy(new URL(dbUrl));
    proxies.push(proxy);
    const made = createDb(await proxy.start(dbUrl), { max: 4 });
    pools.push(made.close);
    return { proxy, pdb: made.db };
  }
  const overloaded = (e: unknown) =>
    e instanceof GatewayError &&
    e.code === 'overloaded' &&
    e.status === 503 &&
    (e.retryAfterMs ?? 0) >= 1_000;

  it('answers overloaded (503, retry-after) when the database refuses connections, for a lease and for an exact hold', async () => {
    const { accountId, keyId } = await funded(10_000_000n);
    const { proxy, pdb } = await proxied();
    proxy.cut();
    const leased = budget({}, pdb);
    const exact = budget({ leaseRequests: 1 }, pdb);
    const ask = (requestId: string) => ({
      requestId,
      accountId,
      keyId,
      micros: 1_000n,
      deadline: deadline(),
    });
    // Concurrent requests waiting for the one lease attempt fail with it, not one attempt after another.
    const errors = await Promise.all([
      leased.admit(ask('down1')).catch((e: unknown) => e),
      leased.admit(ask('down2')).catch((e: unknown) => e),
      exact.admit(ask('down3')).catch((e: unknown) => e),
    ]);
    for (const e of errors) expect(overloaded(e), String(e)).toBe(true);
    expect((errors[0] as Error).message).toMatch(/cannot reach its database/);
    expect(proxy.refused).toBeLessThanOrEqual(2);
    // Back: admitted again, from a new lease.
    proxy.restore();
    const r = await leased.admit(ask('up1'));
    expect(r.ok && r.reservation.leased).toBe(true);
    expect(await holdRows(accountId)).toEqual([{ id: expect.stringMatching(/^lease_/), amount: '64000' }]);
  });

  it('places the next lease before the current one is spent: the request that finds it spent waits for no database', async () => {
    const { accountId, keyId } = await funded(10_000_000n);
    const { proxy, pdb } = await proxied();
    const b = budget({ leaseRequests: 16, dbTimeoutMs: 300 }, pdb);
    const leaseOf = async (i: number) => {
      const r = await b.admit({ requestId: `n${i}`, accountId, keyId, micros: 1_000n, deadline: deadline() });
      if (!r.ok || !r.reservation.leased) throw new Error(`request ${i} not admitted from a lease`);
      return r.reservation.hold.id;
    };
    const ids: string[] = [];
    for (let i = 0; i < 12; i++) ids.push(await leaseOf(i));
    // A quarter of the lease left: nothing placed ahead yet.
    expect(await holdRows(accountId)).toHaveLength(1);
    ids.push(await leaseOf(12));
    await until(async () => (await holdRows(accountId)).length === 2, { what: 'the next lease placed' });
    // Postgres gone: the rest of the first lease, then the next one, admit in memory.
    proxy.cut();
    for (let i = 13; i < 24; i++) ids.push(await leaseOf(i));
    expect(new Set(ids.slice(0, 16)).size).toBe(1);
    expect(new Set(ids.slice(16)).size).toBe(1);
    expect(ids[16]).not.toBe(ids[0]);
    expect(proxy.refused).toBe(0);
    proxy.restore();
    // Both rows hold 16 requests' worth: the spent one was not given anything back.
    expect((await holdRows(accountId)).map((x) => x.amount)).toEqual(['16000', '16000']);
  });

  it('a next lease the balance cannot cover leaves the current one in use, then holds exact amounts', async () => {
    // 20 requests' worth: a lease of 16, then the next one refused, then 4 exact holds.
    const { accountId, keyId } = await funded(20_000n);
    const b = budget({ leaseRequests: 16 });
    const results = [];
    for (let i = 0; i < 22; i++)
      results.push(
        await b.admit({ requestId: `e${i}`, accountId, keyId, micros: 1_000n, deadline: deadline() }),
      );
    expect(results.slice(0, 16).every((r) => r.ok && r.reservation.leased)).toBe(true);
    expect(results.slice(16, 20).every((r) => r.ok && !r.reservation.leased)).toBe(true);
    expect(results.slice(20).every((r) => !r.ok && r.reason === 'insufficient_balance')).toBe(true);
    expect((await getBalance(db, accountId)).availableMicros).toBe(0n);
  });

  it('answers overloaded after dbTimeoutMs when the database does not answer at all', async () => {
    const { accountId, keyId } = await funded(10_000_000n);
    // Accepts connections and never says a word (a black-holed server).
    const held = new Set<Socket>();
    const silent = createServer((s) => {
      held.add(s);
      s.on('error', () => {});
    });
    silent.listen(0, '127.0.0.1');
    await once(silent, 'listening');
    const port = (silent.address() as { port: number }).port;
    const made = createDb(`postgres://postgres@127.0.0.1:${port}/nowhere`, { max: 2 });
    try {
      const b = budget({ dbTimeoutMs: 300 }, made.db);
      const started = Date.now();
      const e = await b
        .admit({ requestId: 'silent', accountId, keyId, micros: 1_000n, deadline: deadline() })
        .catch((x: unknown) => x);
      expect(overloaded(e), String(e)).toBe(true);
      expect(Date.now() - started).toBeLessThan(5_000);
    } finally {
      for (const s of held) s.destroy();
      silent.close();
      await made.close().catch(() => {});
    }
  });

  it('leaves programming errors alone: only a database that cannot be reached is overloaded', async () => {
    const { accountId, keyId } = await funded(10_000_000n);
    const bare = await freshDatabase(); // no migrations: sy_place_hold does not exist
    const made = createDb(bare.url, { max: 2 });
    try {
      const e = await budget({}, made.db)
        .admit({ requestId: 'bug', accountId, keyId, micros: 1_000n, deadline: deadline() })
        .catch((x: unknown) => x);
      expect(e).not.toBeInstanceOf(GatewayError);
      expect(isDbUnavailable(e)).toBe(false);
      expect(String(e)).toMatch(/sy_place_hold/);
    } finally {
      await made.close();
      await bare.drop();
    }
    for (const code of ['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', '57P01', '53300', '08006']) {
      expect(isDbUnavailable(Object.assign(new Error('x'), { code })), code).toBe(true);
    }
    expect(isDbUnavailable(new Error('Connection terminated unexpectedly'))).toBe(true);
    expect(isDbUnavailable(new Error('timeout exceeded when trying to connect'))).toBe(true);
    expect(isDbUnavailable(new Error('x', { cause: Object.assign(new Error('y'), { code: '57P01' }) }))).toBe(
      true,
    );
    for (const code of ['42883', '23505', '22P02', '42P01']) {
      expect(isDbUnavailable(Object.assign(new Error('x'), { code })), code).toBe(false);
    }
    expect(isDbUnavailable(new RangeError('hold amount must not be negative'))).toBe(false);
  });

  it('retries giving back an idle lease rest that failed during the outage, once Postgres is back', async () => {
    const { accountId, keyId } = await funded(10_000_000n);
    const { proxy, pdb } = await proxied();
    const b = budget({ idleMs: 200 }, pdb);
    const r = await b.admit({
      requestId: 'in-flight',
      accountId,
      keyId,
      micros: 1_000n,
      deadline: deadline(),
    });
    expect(r.ok && r.reservation.leased).toBe(true);
    proxy.cut();
    // The lease goes idle; giving its rest back meets the outage.
    await until(() => proxy.refused > 0, { what: 'a give-back refused' });
    proxy.restore();
    // Only the share of the request in flight stays held.
    await until(
      async () => {
        const rows = await holdRows(accountId);
        return rows.length === 1 && rows[0]?.amount === '1000';
      },
      { what: 'lease rest given back after the outage' },
    );
  });

  it('close() keeps retrying the give-back while Postgres is down, within a bound', async () => {
    const { accountId, keyId } = await funded(10_000_000n);
    const { proxy, pdb } = await proxied();
    const b = budget({}, pdb);
    await b.admit({ requestId: 'c1', accountId, keyId, micros: 1_000n, deadline: deadline() });
    proxy.cut();
    const closing = b.close();
    await until(() => proxy.refused > 0, { what: 'the give-back refused' });
    proxy.restore();
    await closing;
    expect(await holdRows(accountId)).toEqual([{ id: expect.stringMatching(/^lease_/), amount: '1000' }]);

    // Never back: close() gives up after closeTimeoutMs (the rest stays held until the row expires).
    const other = await funded(10_000_000n);
    const { proxy: p2, pdb: db2 } = await proxied();
    const b2 = budget({ closeTimeoutMs: 500 }, db2);
    await b2.admit({ requestId: 'c2', ...other, micros: 1_000n, deadline: deadline() });
    p2.cut();
    const started = Date.now();
    await b2.close();
    expect(Date.now() - started).toBeLessThan(3_000);
    expect(await holdRows(other.accountId)).toEqual([
      { id: expect.stringMatching(/^lease_/), amount: '64000' },
    ]);
  });
});
