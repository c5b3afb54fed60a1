import { freshDatabase } from '@faregate/testing/env';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { addCredit, createAccount, createApiKey, ensureBootstrapAccount, getBalance } from './accounts.ts';
import { displayPrefix, findApiKey, generateApiKey, hashApiKey, isWellFormedApiKey } from './api-keys.ts';
import { createDb, type Db } from './client.ts';
import { CLEAN_LEDGER, checkLedgerInvariants } from './invariants.ts';
import { runMigrations } from './migrate.ts';
import { expireHolds, getHold, placeHold, releaseHold, shrinkHold, sweepGivebacks } from './holds.ts';

let db: Db;
let close: () => Promise<void>;
let drop: () => Promise<void>;
const inAMinute = () => new Date(Date.now() + 60_000);

beforeAll(async () => {
  const fresh = await freshDatabase();
  drop = fresh.drop;
  // Several services migrating at once must not trip over each other.
  await Promise.all([runMigrations(fresh.url), runMigrations(fresh.url), runMigrations(fresh.url)]);
  ({ db, close } = createDb(fresh.url, { max: 60 }));
});
afterAll(async () => {
  await close?.();
  await drop?.();
});

async function fundedAccount(micros: bigint) {
  const { id } = await createAccount(db, { name: 't' });
  if (micros > 0n) await addCredit(db, { accountId: id, amountMicros: micros });
  const key = await createApiKey(db, { accountId: id, name: 'k' });
  return { accountId: id, keyId: key.id };
}

describe('placeHold', () => {
  it('admits at most what the balance covers under 50 concurrent requests', async () => {
    const { accountId, keyId } = await fundedAccount(10_000n);
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        placeHold(db, {
          requestId: `burst-${i}`,
          accountId,
          keyId,
          amountMicros: 1_000n,
          expiresAt: inAMinute(),
        }),
      ),
    );
    expect(results.filter((r) => r.ok)).toHaveLength(10);
    // Each refusal is short only because of the others' holds: the balance alone covers it.
    expect(
      results.filter((r) => !r.ok).every((r) => !r.ok && r.reason === 'insufficient_balance' && r.held),
    ).toBe(true);
    expect(await getBalance(db, accountId)).toEqual({
      balanceMicros: 10_000n,
      heldMicros: 10_000n,
      availableMicros: 0n,
    });
  });

  it('enforces a key spend limit over settled spend plus active holds', async () => {
    const { id: accountId } = await createAccount(db, { name: 'lim' });
    await addCredit(db, { accountId, amountMicros: 1_000_000n });
    const key = await createApiKey(db, { accountId, name: 'capped', spendLimitMicros: 5_000n });
    await db.execute(sql`UPDATE api_keys SET spent_micros = 2000 WHERE id = ${key.id}`);
    const hold = (requestId: string, amountMicros: bigint) =>
      placeHold(db, { requestId, accountId, keyId: key.id, amountMicros, expiresAt: inAMinute() });
    expect(await hold('k1', 2_000n)).toEqual({ ok: true });
    expect(await hold('k2', 1_001n)).toEqual({ ok: false, reason: 'key_limit', held: true });
    // Over the limit on its settled spend alone: no hold's settling would make room for it.
    expect(await hold('k4', 3_001n)).toEqual({ ok: false, reason: 'key_limit', held: false });
    expect(await hold('k3', 1_000n)).toEqual({ ok: true });
    // Undo the forged spend so the ledger invariants below hold for this database.
    await db.execute(sql`UPDATE api_keys SET spent_micros = 0 WHERE id = ${key.id}`);
  });

  it('is idempotent per request id and frees money on release', async () => {
    const { accountId, keyId } = await fundedAccount(1_000n);
    const h = { requestId: 'same', accountId, keyId, amountMicros: 800n, expiresAt: inAMinute() };
    expect(await placeHold(db, h)).toEqual({ ok: true });
    expect(await placeHold(db, h)).toEqual({ ok: true });
    expect((await getBalance(db, accountId)).heldMicros).toBe(800n);
    expect(await placeHold(db, { ...h, requestId: 'other' })).toEqual({
      ok: false,
      reason: 'insufficient_balance',
      held: true,
    });
    // More than the balance itself: short whatever the holds do.
    expect(await placeHold(db, { ...h, requestId: 'big', amountMicros: 1_001n })).toEqual({
      ok: false,
      reason: 'insufficient_balance',
      held: false,
    });
    await releaseHold(db, 'same');
    expect(await placeHold(db, { ...h, requestId: 'other' })).toEqual({ ok: true });
  });

  it('refuses unknown accounts', async () => {
    const r = await placeHold(db, {
      requestId: 'nobody',
      accountId: 'acct_nope',
      keyId: 'key_nope',
      amountMicros: 1n,
      expiresAt: inAMinute(),
    });
    expect(r).toEqual({ ok: false, reason: 'insufficient_balance', held: false });
  });

  it('stops counting expired holds and sweeps them', async () => {
    const { accountId, keyId } = await fundedAccount(1_000n);
    const past = new Date(Date.now() - 1_000);
    await db.execute(
      sql`INSERT INTO holds (request_id, account_id, key_id, amount_micros, expires_at) VALUES ('lost', ${accountId}, ${keyId}, 1000, ${past.toISOString()})`,
    );
    expect((await getBalance(db, accountId)).availableMicros).toBe(1_000n);
    expect(
      await placeHold(db, {
        requestId: 'fresh',
        accountId,
        keyId,
        amountMicros: 1_000n,
        expiresAt: inAMinute(),
      }),
    ).toEqual({
      ok: true,
    });
    expect(await expireHolds(db)).toBeGreaterThanOrEqual(1);
    expect(await getHold(db, 'lost')).toBeUndefined();
    expect(await getHold(db, 'fresh')).toBe(1_000n);
  });

  it("judges expiry by Postgres's clock: a process whose wall clock jumped neither places expired holds nor sweeps live ones", async () => {
    const { accountId, keyId } = await fundedAccount(1_000n);
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      // An ingress 10 minutes behind places a hold for the next minute (by its clock): it counts.
      vi.setSystemTime(Date.now() - 600_000);
      expect(
        await placeHold(db, {
          requestId: 'behind',
          accountId,
          keyId,
          amountMicros: 400n,
          expiresAt: inAMinute(),
        }),
      ).toEqual({ ok: true });
      vi.useRealTimers();
      expect(await getHold(db, 'behind')).toBe(400n);
      expect((await getBalance(db, accountId)).availableMicros).toBe(600n);
      // A billing 10 minutes ahead sweeps: the live hold stays.
      vi.useFakeTimers({ toFake: ['Date'] });
      vi.setSystemTime(Date.now() + 600_000);
      await expireHolds(db);
    } finally {
      vi.useRealTimers();
    }
    expect(await getHold(db, 'behind')).toBe(400n);
  });
});

describe('shrinkHold', () => {
  it('gives each give-back once: a retry with the same id (a lost reply) shrinks nothing twice', async () => {
    const { accountId, keyId } = await fundedAccount(100_000n);
    const placed = await placeHold(db, {
      requestId: 'lease-gb',
      accountId,
      keyId,
      amountMicros: 50_000n,
      expiresAt: inAMinute(),
    });
    expect(placed).toEqual({ ok: true });
    await shrinkHold(db, 'lease-gb', 10_000n, 'gb-1');
    // The same give-back again (its first reply was lost), several times and at once.
    await Promise.all([1, 2, 3].map(() => shrinkHold(db, 'lease-gb', 10_000n, 'gb-1')));
    expect(await getHold(db, 'lease-gb')).toBe(40_000n);
    // Another give-back is another amount.
    await shrinkHold(db, 'lease-gb', 15_000n, 'gb-2');
    expect(await getHold(db, 'lease-gb')).toBe(25_000n);
    expect((await getBalance(db, accountId)).availableMicros).toBe(75_000n);
    // Emptied: the row goes; a late retry of an applied give-back changes nothing.
    await shrinkHold(db, 'lease-gb', 25_000n, 'gb-3');
    await shrinkHold(db, 'lease-gb', 25_000n, 'gb-3');
    expect(await getHold(db, 'lease-gb')).toBeUndefined();
    // Records of old give-backs are swept (none is a day old yet).
    expect(await sweepGivebacks(db)).toBe(0);
    expect(await sweepGivebacks(db, 0)).toBeGreaterThanOrEqual(3);
  });
});

describe('accounts and keys', () => {
  it('generates well-formed, unique keys and finds them by hash', async () => {
    const keys = new Set(Array.from({ length: 1000 }, generateApiKey));
    expect(keys.size).toBe(1000);
    for (const k of keys) expect(isWellFormedApiKey(k)).toBe(true);
    const k = [...keys][0]!;
    expect(isWellFormedApiKey(`${k.slice(0, -1)}${k.at(-1) === 'a' ? 'b' : 'a'}`)).toBe(false);
    const { id: accountId } = await createAccount(db, { name: 'keys' });
    const created = await createApiKey(db, {
      accountId,
      name: 'x',
      allowedModels: ['gpt-4o'],
      spendLimitMicros: 7n,
    });
    const found = await findApiKey(db, hashApiKey(created.key));
    expect(found).toMatchObject({
      id: created.id,
      accountId,
      revoked: false,
      allowedModels: ['gpt-4o'],
      spendLimitMicros: 7n,
    });
    expect(created.key.startsWith(found!.prefix)).toBe(true);
    const stored = await db.execute<{ n: string }>(
      sql`SELECT count(*)::text AS n FROM api_keys WHERE hash = ${created.key} OR prefix = ${created.key}`,
    );
    expect(stored.rows[0]?.n).toBe('0'); // the plaintext key is stored nowhere
  });

  it('creates the bootstrap account exactly once under concurrent starts', async () => {
    const apiKey = generateApiKey();
    const rs = await Promise.all(Array.from({ length: 8 }, () => ensureBootstrapAccount(db, { apiKey })));
    expect(rs.filter((r) => r.created)).toHaveLength(1);
    expect(new Set(rs.map((r) => r.accountId)).size).toBe(1);
    // No money: its credit is a command billing applies (services/billing/src/credits.test.ts).
    expect((await getBalance(db, rs[0]!.accountId)).balanceMicros).toBe(0n);
  });

  it('stores and lists a key the operator chose with an eighth of it shown at most, never most of it', async () => {
    expect(displayPrefix('letmein123')).toBe('l…');
    expect(displayPrefix('fg-demo-key-change-me')).toBe('fg…');
    expect(displayPrefix('x'.repeat(7))).toBe('…');
    expect(displayPrefix(`sk-${'a'.repeat(60)}`)).toBe('sk-a…');
    const ours = generateApiKey();
    expect(displayPrefix(ours)).toBe(ours.slice(0, 12));
    // A look-alike of ours (a chosen key starting `fg_live_`, not of our length) is a chosen key.
    expect(displayPrefix('fg_live_short-one')).toBe('fg…');
    const apiKey = `chosen-${Date.now()}`;
    await ensureBootstrapAccount(db, { apiKey });
    const stored = await db.execute<{ prefix: string }>(
      sql`SELECT prefix FROM api_keys WHERE hash = ${hashApiKey(apiKey)}`,
    );
    expect(stored.rows[0]?.prefix).toBe(`${apiKey.slice(0, 2)}…`);
    // A row from before (its first 12 characters) gets today's prefix at the next start.
    await db.execute(
      sql`UPDATE api_keys SET prefix = ${apiKey.slice(0, 12)} WHERE hash = ${hashApiKey(apiKey)}`,
    );
    expect((await ensureBootstrapAccount(db, { apiKey })).created).toBe(false);
    const again = await db.execute<{ prefix: string }>(
      sql`SELECT prefix FROM api_keys WHERE hash = ${hashApiKey(apiKey)}`,
    );
    expect(again.rows[0]?.prefix).toBe(`${apiKey.slice(0, 2)}…`);
  });

  it('applies a top-up once per idempotency key and keeps the books balanced', async () => {
    const { id: accountId } = await createAccount(db, { name: 'topup' });
    const rs = await Promise.all(
      Array.from({ length: 5 }, () =>
        addCredit(db, { accountId, amountMicros: 250n, idempotencyKey: 'once' }),
      ),
    );
    expect(new Set(rs.map((r) => r.transactionId)).size).toBe(1);
    expect((await getBalance(db, accountId)).balanceMicros).toBe(250n);
    expect(await checkLedgerInvariants(db)).toEqual(CLEAN_LEDGER);
  });
});
