import { addCredit, createAccount, createApiKey, getBalance } from '@faregate/db/accounts';
import { createDb, type Db } from '@faregate/db/client';
import { runMigrations } from '@faregate/db/migrate';
import { freshDatabase, until } from '@faregate/testing/env';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Budget, type BudgetOptions } from './budget.ts';

let db: Db;
let close: () => Promise<void>;
let drop: () => Promise<void>;
const budgets: Budget[] = [];

beforeAll(async () => {
  const fresh = await freshDatabase();
  drop = fresh.drop;
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
  leaseTtlMs: 30_000,
  idleMs: 60_000,
  requestTimeoutMs: 60_000,
};
function budget(opts: Partial<BudgetOptions> = {}): Budget {
  const b = new Budget(db, { ...OPTS, ...opts });
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
