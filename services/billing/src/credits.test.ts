import { bootstrapCreditKey } from '@faregate/contracts/credits';
import { createAccount, ensureBootstrapAccount, getBalance } from '@faregate/db/accounts';
import { generateApiKey } from '@faregate/db/api-keys';
import { findCreditOutcome } from '@faregate/db/credit-commands';
import { CLEAN_LEDGER, checkLedgerInvariants } from '@faregate/db/invariants';
import { until } from '@faregate/testing/env';
import { sql } from 'drizzle-orm';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBilling } from './billing.ts';
import { BillingConfig } from './config.ts';
import { createBillingDeps } from './create-deps.ts';
import { applyCreditCommand } from './credits.ts';
import { readGroup, streamStatus } from './stream.ts';
import { creditCommand, type Harness, harness, metricValue, rng } from './test-harness.ts';

let h: Harness;
beforeAll(async () => {
  h = await harness();
});
afterAll(async () => {
  await h?.close();
});

async function drained(): Promise<boolean> {
  const s = await streamStatus(h.redis, h.keys.credits, h.keys.creditsGroup);
  return s.pending === 0 && s.backlog === 0;
}

/** Journal transactions posted under an idempotency key (a credit posted twice would show 2). */
async function postings(key: string): Promise<number> {
  const r = await h.db.execute<{ n: string }>(
    sql`SELECT count(*)::text AS n FROM journal_transactions WHERE idempotency_key = ${key}`,
  );
  return Number(r.rows[0]!.n);
}

describe('credit commands', () => {
  it('applies a command once even when it is delivered twice, and records its outcome', async () => {
    const { id: account } = await createAccount(h.db, { name: 'twice' });
    const c = await h.creditConsumer('twice');
    const cmd = creditCommand({ key: 'twice-1', account, amountMicros: '2500000', reference: 'invoice 7' });
    await h.xaddCredit(cmd);
    await h.xaddCredit(cmd);
    await until(drained, { what: 'both deliveries acked' });
    expect(await metricValue(c.metrics.credits, { result: 'applied' })).toBe(1);
    expect(await metricValue(c.metrics.credits, { result: 'duplicate' })).toBe(1);
    expect((await getBalance(h.db, account)).balanceMicros).toBe(2_500_000n);
    expect(await postings('twice-1')).toBe(1);
    const outcome = await findCreditOutcome(h.db, 'twice-1');
    expect(outcome).toMatchObject({
      status: 'applied',
      accountId: account,
      amountMicros: 2_500_000n,
      balanceAfterMicros: 2_500_000n,
    });
    expect(outcome?.status === 'applied' && outcome.transactionId).toMatch(/^txn_/);
    expect(await checkLedgerInvariants(h.db)).toEqual(CLEAN_LEDGER);
    await c.stop();
  });

  it('refuses a command for an unknown account, records the refusal, and posts nothing', async () => {
    const c = await h.creditConsumer('unknown');
    const before = await h.db.execute<{ n: string }>(sql`SELECT count(*)::text AS n FROM journal_entries`);
    await h.xaddCredit(creditCommand({ key: 'nobody-1', account: 'acct_missing' }));
    await until(drained, { what: 'refusal acked' });
    expect(await findCreditOutcome(h.db, 'nobody-1')).toMatchObject({
      status: 'refused',
      accountId: 'acct_missing',
      reason: 'unknown_account',
    });
    expect(await metricValue(c.metrics.credits, { result: 'refused' })).toBe(1);
    const after = await h.db.execute<{ n: string }>(sql`SELECT count(*)::text AS n FROM journal_entries`);
    expect(after.rows[0]!.n).toBe(before.rows[0]!.n);
    // The refusal is the key's answer for good: a replay does not apply it later.
    expect(
      await applyCreditCommand(h.db, creditCommand({ key: 'nobody-1', account: 'acct_missing' })),
    ).toEqual({
      result: 'duplicate',
    });
    expect(await checkLedgerInvariants(h.db)).toEqual(CLEAN_LEDGER);
    await c.stop();
  });

  it('does not credit twice after a crash between commit and XACK (own pending list, then reclaim)', async () => {
    const { id: account } = await createAccount(h.db, { name: 'crash' });
    await h.xaddCredit(creditCommand({ key: 'crash-1', account, amountMicros: '700' }));
    await h.xaddCredit(creditCommand({ key: 'crash-2', account, amountMicros: '300' }));
    // "Crash": a consumer reads both and commits the first, then dies before XACK.
    const read = await readGroup(h.redis, {
      key: h.keys.credits,
      group: h.keys.creditsGroup,
      consumer: 'crashy',
      count: 10,
      id: '>',
    });
    expect(read).toHaveLength(2);
    expect(
      await applyCreditCommand(h.db, creditCommand({ key: 'crash-1', account, amountMicros: '700' })),
    ).toMatchObject({ result: 'applied' });
    // Another replica takes the dead consumer's entries over.
    const rescuer = await h.creditConsumer('rescuer', { claimIdleMs: 50, claimEveryMs: 50 });
    await until(drained, { what: 'orphaned commands reclaimed' });
    expect(await metricValue(rescuer.metrics.credits, { result: 'duplicate' })).toBe(1);
    expect(await metricValue(rescuer.metrics.credits, { result: 'applied' })).toBe(1);
    expect((await getBalance(h.db, account)).balanceMicros).toBe(1_000n);
    expect(await postings('crash-1')).toBe(1);
    expect(await checkLedgerInvariants(h.db)).toEqual(CLEAN_LEDGER);
    await rescuer.stop();
  });

  it('applies a randomized, duplicated, partly malformed stream once per key across two consumers', async () => {
    const seed = Number(process.env.BILLING_SEED ?? Math.floor(Math.random() * 2 ** 31));
    console.log(`[credits] seed=${seed} (rerun with BILLING_SEED=${seed})`);
    const rand = rng(seed);
    const accounts = await Promise.all([1, 2, 3].map((i) => createAccount(h.db, { name: `r${i}` })));
    const before = await Promise.all(accounts.map((a) => getBalance(h.db, a.id)));
    const expected = new Map<string, bigint>();
    const lines: string[] = [];
    let known = 0;
    let malformed = 0;
    for (let i = 0; i < 60; i++) {
      const unknown = rand() < 0.15;
      const account = unknown ? `acct_gone${i}` : accounts[Math.floor(rand() * accounts.length)]!.id;
      const amount = BigInt(1 + Math.floor(rand() * 5_000_000));
      const line = JSON.stringify(
        creditCommand({ key: `rand-${seed}-${i}`, account, amountMicros: String(amount) }),
      );
      if (!unknown) {
        expected.set(account, (expected.get(account) ?? 0n) + amount);
        known++;
      }
      const copies = 1 + Math.floor(rand() * 3);
      for (let k = 0; k < copies; k++) lines.push(line);
      if (rand() < 0.1) {
        lines.push(rand() < 0.5 ? '{not json' : JSON.stringify({ v: 1, key: 'x', amountMicros: '-5' }));
        malformed++;
      }
    }
    // Shuffled: duplicates arrive in any order, possibly to both consumers at once.
    for (let i = lines.length - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      [lines[i], lines[j]] = [lines[j]!, lines[i]!];
    }
    const deadBefore = await h.redis.xlen(h.keys.deadLetters(h.keys.credits));
    const a = await h.creditConsumer('ra', { batchSize: 1 + Math.floor(rand() * 10) });
    const b = await h.creditConsumer('rb', { batchSize: 1 + Math.floor(rand() * 10) });
    for (const l of lines) await h.xaddCredit(l);
    await until(drained, { what: 'randomized commands acked', timeoutMs: 30_000 });
    for (const [i, acct] of accounts.entries()) {
      const want = before[i]!.balanceMicros + (expected.get(acct.id) ?? 0n);
      expect((await getBalance(h.db, acct.id)).balanceMicros).toBe(want);
    }
    const applied =
      (await metricValue(a.metrics.credits, { result: 'applied' })) +
      (await metricValue(b.metrics.credits, { result: 'applied' }));
    expect(applied).toBe(known);
    expect((await h.redis.xlen(h.keys.deadLetters(h.keys.credits))) - deadBefore).toBe(malformed);
    expect(await checkLedgerInvariants(h.db)).toEqual(CLEAN_LEDGER);
    await a.stop();
    await b.stop();
  });

  it('credits a bootstrap account once, however many starts queue its command', async () => {
    const apiKey = generateApiKey();
    const starts = await Promise.all(
      Array.from({ length: 4 }, () => ensureBootstrapAccount(h.db, { apiKey })),
    );
    const accountId = starts[0]!.accountId;
    expect(starts.filter((s) => s.created)).toHaveLength(1);
    // Creating the account moved no money: that is billing's job.
    expect((await getBalance(h.db, accountId)).balanceMicros).toBe(0n);
    const c = await h.creditConsumer('boot');
    const key = bootstrapCreditKey(accountId);
    for (const _ of starts)
      await h.xaddCredit(creditCommand({ key, account: accountId, amountMicros: '5000000' }));
    await until(drained, { what: 'bootstrap commands acked' });
    // A later restart (with a different configured credit) queues it again: still a no-op.
    await h.xaddCredit(creditCommand({ key, account: accountId, amountMicros: '9000000' }));
    await until(drained, { what: 'restart command acked' });
    expect((await getBalance(h.db, accountId)).balanceMicros).toBe(5_000_000n);
    expect(await postings(key)).toBe(1);
    expect(await checkLedgerInvariants(h.db)).toEqual(CLEAN_LEDGER);
    await c.stop();
  });
});

describe('createBilling', () => {
  it('builds billing from its config (createBillingDeps); start() applies the credits queued before it, then keeps executing them', async () => {
    const { id: account } = await createAccount(h.db, { name: 'factory' });
    const config = BillingConfig.parse({
      DATABASE_URL: h.dbUrl,
      REDIS_URL: h.redisUrl,
      REDIS_PREFIX: h.keys.prefix,
      BILLING_CONSUMER: 'factory',
      BILLING_BATCH_MS: '10',
    });
    // Queued while billing was away (as a bootstrap credit is): applied before start() resolves.
    await h.xaddCredit(creditCommand({ key: 'factory-0', account, amountMicros: '40' }));
    const deps = createBillingDeps(config, pino({ level: 'silent' }));
    const billing = createBilling(deps);
    await billing.start();
    expect(billing.healthy()).toBe(true);
    expect(await findCreditOutcome(h.db, 'factory-0')).toMatchObject({ status: 'applied' });
    await h.xaddCredit(creditCommand({ key: 'factory-1', account, amountMicros: '2' }));
    await until(async () => (await findCreditOutcome(h.db, 'factory-1'))?.status === 'applied', {
      what: 'credit applied by the running service',
    });
    expect((await getBalance(h.db, account)).balanceMicros).toBe(42n);
    await billing.stop();
    expect(billing.healthy()).toBe(false);
    await deps.close();
  });
});
