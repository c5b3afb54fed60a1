import { usdToMicros } from '@faregate/catalog/money';
import { BUILTIN_MODELS } from '@faregate/catalog/models';
import type { UsageEvent } from '@faregate/contracts/usage';
import { addCredit, createAccount, createApiKey, getBalance } from '@faregate/db/accounts';
import { getSpend } from '@faregate/db/admin-views';
import { getHold, placeHold } from '@faregate/db/holds';
import { CLEAN_LEDGER, checkLedgerInvariants } from '@faregate/db/invariants';
import { until } from '@faregate/testing/env';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pino from 'pino';
import { startHoldSweeper } from './hold-sweeper.ts';
import { settleBatch } from './ledger.ts';
import { createMetrics } from './metrics.ts';
import { priceEvents } from './pricing.ts';
import { PriceBook } from './price-book.ts';
import { type Harness, harness, metricValue, rng, usageEvent } from './test-harness.ts';

let h: Harness;
beforeAll(async () => {
  h = await harness();
});
afterAll(async () => {
  await h?.close();
});

const count = async (table: string) =>
  Number((await h.db.execute<{ n: string }>(sql.raw(`SELECT count(*)::text AS n FROM ${table}`))).rows[0]!.n);

/** Independent reference price: the catalog's list price, computed the long way. */
function expectedCost(e: UsageEvent): bigint {
  const m = BUILTIN_MODELS.find((x) => x.provider === e.provider && x.id === e.model);
  if (!m?.price) return 0n;
  const p = m.price;
  const uncached = BigInt(Math.max(0, e.inputTokens - e.cachedInputTokens - e.cacheWriteTokens));
  const n =
    uncached * usdToMicros(p.inputPerM) +
    BigInt(e.cachedInputTokens) * usdToMicros(p.cachedInputPerM ?? p.inputPerM) +
    BigInt(e.cacheWriteTokens) * usdToMicros(p.cacheWritePerM ?? p.inputPerM) +
    BigInt(e.outputTokens) * usdToMicros(p.outputPerM);
  return (n + 999_999n) / 1_000_000n; // rounded up, once per call
}

async function tenant(credit: bigint) {
  const { id } = await createAccount(h.db, { name: 'tenant' });
  await addCredit(h.db, { accountId: id, amountMicros: credit });
  const k = await createApiKey(h.db, { accountId: id, name: 'k' });
  return { account: id, key: k.id };
}

/** A hold of 50,000 µ$ for the request, for a minute. */
const hold = (t: { account: string; key: string }, requestId: string) =>
  placeHold(h.db, {
    requestId,
    accountId: t.account,
    keyId: t.key,
    amountMicros: 50_000n,
    expiresAt: new Date(Date.now() + 60_000),
  });

/** A budget lease of 30,000 µ$ for a minute (a request admitted under it names it with its share). */
const lease = (t: { account: string; key: string }, id: string) =>
  placeHold(h.db, {
    requestId: id,
    accountId: t.account,
    keyId: t.key,
    amountMicros: 30_000n,
    expiresAt: new Date(Date.now() + 60_000),
  });

async function settledAndAcked() {
  const s = await h.usageStatus();
  return s.pending === 0 && s.backlog === 0;
}

describe('settlement', () => {
  it('settles a randomized, duplicated, partly malformed stream exactly once with balanced books', async () => {
    const seed = Number(process.env.BILLING_SEED ?? Math.floor(Math.random() * 2 ** 31));
    console.log(`[settle] seed=${seed} (rerun with BILLING_SEED=${seed})`);
    const rand = rng(seed);
    const pick = <T>(xs: T[]) => xs[Math.floor(rand() * xs.length)]!;
    const tenants = await Promise.all([1, 2, 3].map(() => tenant(50_000_000n)));
    const models: Array<[string, string]> = [
      ['openai', 'gpt-4o-mini'],
      ['openai', 'gpt-4o'],
      ['anthropic', 'claude-sonnet-4-5'],
      ['gemini', 'gemini-2.5-flash'],
      ['llama', 'llama3.2'],
      ['openai', 'gpt-unpriced'],
    ];
    const events: UsageEvent[] = [];
    for (let r = 0; r < 120; r++) {
      const t = pick(tenants);
      const requestId = `req_${seed}_${r}`;
      await placeHold(h.db, {
        requestId,
        accountId: t.account,
        keyId: t.key,
        amountMicros: 100_000n,
        expiresAt: new Date(Date.now() + 600_000),
      });
      const calls = 1 + Math.floor(rand() * 3); // retries / fallbacks, each billed at its own model
      for (let c = 0; c < calls; c++) {
        const [provider, model] = pick(models);
        const input = Math.floor(rand() * 5000);
        const cached = Math.floor(rand() * input * 0.5);
        const cacheWrite = provider === 'anthropic' ? Math.floor(rand() * (input - cached)) : 0;
        events.push(
          usageEvent({
            requestId,
            account: t.account,
            key: t.key,
            provider,
            model,
            hop: c,
            attempt: 0,
            inputTokens: input,
            cachedInputTokens: cached,
            cacheWriteTokens: cacheWrite,
            outputTokens: Math.floor(rand() * 2000),
            outcome: c === calls - 1 ? 'success' : 'failed',
            final: c === calls - 1,
          }),
        );
      }
    }
    // Deliver every event, a random 25 % a second time (worker retries), and some junk in between.
    const deliveries = [...events, ...events.filter(() => rand() < 0.25)].sort(() => rand() - 0.5);
    const junk = ['not json', '{"v":1}', JSON.stringify({ ...events[0], inputTokens: -1 })];
    for (const d of deliveries) {
      await h.xadd(d);
      if (rand() < 0.02) await h.xadd(pick(junk));
    }
    await h.redis.xadd(h.keys.usage(3), '*', 'other', 'field');

    // Two replicas share the group, small batches so batches interleave.
    const a = await h.consumer('a', { batchSize: 1 + Math.floor(rand() * 40) });
    const b = await h.consumer('b', { batchSize: 1 + Math.floor(rand() * 40) });
    await until(async () => (await count('usage_events')) === events.length && (await settledAndAcked()), {
      what: 'all events settled and acked',
    });

    expect(await checkLedgerInvariants(h.db)).toEqual(CLEAN_LEDGER);
    const costs = await h.db.execute<{ id: string; cost: string; unpriced: boolean }>(
      sql`SELECT id, cost_micros::text AS cost, unpriced FROM usage_events`,
    );
    const byId = new Map(costs.rows.map((r) => [r.id, r]));
    for (const e of events) {
      expect(BigInt(byId.get(e.id)!.cost), e.id).toBe(expectedCost(e));
      expect(byId.get(e.id)!.unpriced).toBe(e.model === 'gpt-unpriced');
    }
    for (const t of tenants) {
      const spent = events.filter((e) => e.account === t.account).reduce((s, e) => s + expectedCost(e), 0n);
      expect((await getBalance(h.db, t.account)).balanceMicros).toBe(50_000_000n - spent);
    }
    // Every request ended with a final event: every hold is gone.
    expect(await count('holds')).toBe(0);
    const dup =
      (await metricValue(a.metrics.settled, { result: 'duplicate' })) +
      (await metricValue(b.metrics.settled, { result: 'duplicate' }));
    expect(dup).toBe(deliveries.length - events.length);
    const malformed = (await metricValue(a.metrics.malformed)) + (await metricValue(b.metrics.malformed));
    expect(malformed).toBe(await h.redis.xlen(h.keys.usageDeadLetters));
    expect(malformed).toBeGreaterThanOrEqual(1);
    const unpriced = (await metricValue(a.metrics.unpriced)) + (await metricValue(b.metrics.unpriced));
    expect(unpriced).toBe(events.filter((e) => e.model === 'gpt-unpriced').length);

    // Redelivery of everything, long after: nothing changes.
    const before = await h.db.execute(sql`SELECT id, balance_micros FROM ledger_accounts ORDER BY id`);
    const entries = await count('journal_entries');
    for (const e of events) await h.xadd(e);
    await until(settledAndAcked, { what: 'redelivered events acked' });
    expect(await count('journal_entries')).toBe(entries);
    expect(
      (await h.db.execute(sql`SELECT id, balance_micros FROM ledger_accounts ORDER BY id`)).rows,
    ).toEqual(before.rows);
    expect(await checkLedgerInvariants(h.db)).toEqual(CLEAN_LEDGER);
    await a.stop();
    await b.stop();
  });

  it('does not double-post after a crash between commit and XACK', async () => {
    const t = await tenant(10_000_000n);
    const events = Array.from({ length: 20 }, (_, i) => usageEvent({ requestId: `crash${i}`, ...t }));
    for (const e of events) await h.xadd(e);
    // "Crash": a consumer reads and commits the batch, then dies before XACK.
    const read = await h.readUsage('crashy', 100);
    expect(read).toHaveLength(20);
    const book = new PriceBook(h.db);
    await book.load();
    const r = await settleBatch(h.db, await priceEvents(book, events));
    expect(r.inserted).toHaveLength(20);
    const entries = await count('journal_entries');
    const balance = (await getBalance(h.db, t.account)).balanceMicros;

    // Restarted under the same name, it re-reads its own pending list first.
    const again = await h.consumer('crashy');
    await until(settledAndAcked, { what: 'pending list drained' });
    expect(await metricValue(again.metrics.settled, { result: 'duplicate' })).toBe(20);
    expect(await count('journal_entries')).toBe(entries);
    expect((await getBalance(h.db, t.account)).balanceMicros).toBe(balance);
    await again.stop();
  });

  it('counts a correction as corrected, with the cost it moved, not as a duplicate', async () => {
    const t = await tenant(10_000_000n);
    const base = {
      requestId: 'req_metrics',
      ...t,
      model: 'gpt-4o',
      outcome: 'failed' as const,
      final: false,
    };
    const estimate = usageEvent({ ...base, inputTokens: 900, outputTokens: 0, estimated: true });
    const real = usageEvent({ ...base, inputTokens: 700, outputTokens: 400 });
    const c = await h.consumer('metrics');
    await h.xadd(estimate);
    await until(async () => (await metricValue(c.metrics.settled, { result: 'settled' })) === 1, {
      what: 'estimate settled',
    });
    await h.xadd(real);
    await h.xadd(real);
    await until(settledAndAcked, { what: 'usage settled' });
    expect(await metricValue(c.metrics.settled, { result: 'corrected' })).toBe(1);
    expect(await metricValue(c.metrics.settled, { result: 'duplicate' })).toBe(1);
    const delta = expectedCost(real) - expectedCost(estimate);
    const direction = delta > 0n ? 'up' : 'down';
    expect(await metricValue(c.metrics.correctedMicros, { provider: 'openai', direction })).toBe(
      Number(delta > 0n ? delta : -delta),
    );
    await c.stop();
  });

  it("reclaims a dead consumer's pending events (XAUTOCLAIM)", async () => {
    const t = await tenant(10_000_000n);
    const events = Array.from({ length: 5 }, (_, i) => usageEvent({ requestId: `orphan${i}`, ...t }));
    for (const e of events) await h.xadd(e);
    expect(await h.readUsage('dead', 100)).toHaveLength(5);
    const rescuer = await h.consumer('rescuer', { claimIdleMs: 50, claimEveryMs: 50 });
    await until(settledAndAcked, { what: 'orphans reclaimed' });
    expect(await metricValue(rescuer.metrics.settled, { result: 'settled' })).toBe(5);
    const spent = events.reduce((s, e) => s + expectedCost(e), 0n);
    expect((await getBalance(h.db, t.account)).balanceMicros).toBe(10_000_000n - spent);
    await rescuer.stop();
  });

  it("replaces a call's estimate with the call's own usage when that comes later, through a correction; never the other way", async () => {
    const t = await tenant(10_000_000n);
    const book = new PriceBook(h.db);
    await book.load();
    const settle = async (...events: UsageEvent[]) => settleBatch(h.db, await priceEvents(book, events));
    const row = async (id: string) =>
      (
        await h.db.execute<{
          input_tokens: number;
          output_tokens: number;
          cost_micros: string;
          estimated: boolean;
          estimated_cost_micros: string | null;
          correction_transaction_id: string | null;
        }>(
          sql`SELECT input_tokens, output_tokens, cost_micros::text, estimated,
                     estimated_cost_micros::text, correction_transaction_id
                FROM usage_events WHERE id = ${id}`,
        )
      ).rows;
    const balance = async () => (await getBalance(h.db, t.account)).balanceMicros;
    const spent = async () =>
      BigInt(
        (
          await h.db.execute<{ s: string }>(
            sql`SELECT spent_micros::text AS s FROM api_keys WHERE id = ${t.key}`,
          )
        ).rows[0]!.s,
      );

    // A frozen call billed by the request's next run: its prompt, estimated, and nothing of its answer.
    const base = { requestId: 'req_frozen', ...t, model: 'gpt-4o', outcome: 'failed' as const, final: false };
    const estimate = usageEvent({ ...base, inputTokens: 900, outputTokens: 0, estimated: true });
    const real = usageEvent({ ...base, inputTokens: 700, outputTokens: 400 });
    expect(estimate.id).toBe(real.id);
    expect((await settle(estimate)).inserted).toHaveLength(1);
    const afterEstimate = await balance();
    expect(afterEstimate).toBe(10_000_000n - expectedCost(estimate));

    // Its worker thawed and reported the provider's count: that replaces the estimate (a correction,
    // not a duplicate, for the metrics).
    const corrected = await settle(real);
    expect(corrected.inserted).toHaveLength(0);
    expect(corrected.duplicates).toBe(0);
    expect(corrected.corrections).toEqual([
      { provider: 'openai', deltaMicros: expectedCost(real) - expectedCost(estimate) },
    ]);
    const [fixed] = await row(real.id);
    expect(fixed).toMatchObject({
      input_tokens: 700,
      output_tokens: 400,
      cost_micros: String(expectedCost(real)),
      estimated: false,
      estimated_cost_micros: String(expectedCost(estimate)),
    });
    expect(fixed?.correction_transaction_id).toMatch(/-c$/);
    expect(await balance()).toBe(10_000_000n - expectedCost(real));
    expect(await spent()).toBe(expectedCost(real));
    expect(await checkLedgerInvariants(h.db)).toEqual(CLEAN_LEDGER);

    // Replaced once: the same usage again, or an estimate after, is a duplicate.
    const entries = await count('journal_entries');
    expect(await settle(real)).toMatchObject({ duplicates: 1, corrections: [] });
    expect(await settle(estimate)).toMatchObject({ duplicates: 1, corrections: [] });
    expect(await count('journal_entries')).toBe(entries);
    expect((await row(real.id))[0]?.cost_micros).toBe(String(expectedCost(real)));

    // The call's usage first, then an estimate: the usage stands.
    const first = usageEvent({ ...base, requestId: 'req_real_first', inputTokens: 50, outputTokens: 60 });
    await settle(first);
    await settle({ ...first, inputTokens: 5_000, outputTokens: 0, estimated: true });
    expect(await row(first.id)).toMatchObject([
      { input_tokens: 50, estimated: false, estimated_cost_micros: null },
    ]);

    // Both in one batch: the call's usage wins, with no correction.
    const both = usageEvent({ ...base, requestId: 'req_both', inputTokens: 10, outputTokens: 20 });
    await settle({ ...both, inputTokens: 3_000, outputTokens: 0, estimated: true }, both);
    expect(await row(both.id)).toMatchObject([
      { input_tokens: 10, output_tokens: 20, estimated: false, correction_transaction_id: null },
    ]);
    expect(await checkLedgerInvariants(h.db)).toEqual(CLEAN_LEDGER);
  });

  it("a final estimate of a call already settled from its own usage: the usage stands, becomes the request's final event and releases the hold", async () => {
    const t = await tenant(10_000_000n);
    const book = new PriceBook(h.db);
    await book.load();
    await hold(t, 'req_late_final');
    const base = { requestId: 'req_late_final', ...t, model: 'gpt-4o', outcome: 'failed' as const };
    // The frozen call's own usage arrived first (not final: its attempt no longer owned the job)...
    const own = usageEvent({ ...base, final: false, inputTokens: 70, outputTokens: 40 });
    await settleBatch(h.db, await priceEvents(book, [own]));
    expect(await getHold(h.db, 'req_late_final')).toBe(50_000n - expectedCost(own));
    // ...then the re-run's final event for it, an estimate (a cut-off answer ends with it).
    const entries = await count('journal_entries');
    await settleBatch(
      h.db,
      await priceEvents(book, [{ ...own, final: true, inputTokens: 900, outputTokens: 5, estimated: true }]),
    );
    expect(await getHold(h.db, 'req_late_final')).toBeUndefined();
    const r = await h.db.execute<{ input_tokens: number; final: boolean; estimated: boolean }>(
      sql`SELECT input_tokens, final, estimated FROM usage_events WHERE id = ${own.id}`,
    );
    expect(r.rows).toEqual([{ input_tokens: 70, final: true, estimated: false }]);
    expect(await count('journal_entries')).toBe(entries);
    expect((await getBalance(h.db, t.account)).balanceMicros).toBe(10_000_000n - expectedCost(own));
    expect(await checkLedgerInvariants(h.db)).toEqual(CLEAN_LEDGER);

    // Both in one batch, the final one an estimate: the usage is kept, final, and the hold released.
    await hold(t, 'req_same_batch');
    const mine = usageEvent({
      ...base,
      requestId: 'req_same_batch',
      final: false,
      inputTokens: 30,
      outputTokens: 9,
    });
    await settleBatch(
      h.db,
      await priceEvents(book, [
        { ...mine, final: true, inputTokens: 400, outputTokens: 0, estimated: true },
        mine,
      ]),
    );
    expect(await getHold(h.db, 'req_same_batch')).toBeUndefined();
    const same = await h.db.execute<{ input_tokens: number; final: boolean; estimated: boolean }>(
      sql`SELECT input_tokens, final, estimated FROM usage_events WHERE id = ${mine.id}`,
    );
    expect(same.rows).toEqual([{ input_tokens: 30, final: true, estimated: false }]);
    expect(await checkLedgerInvariants(h.db)).toEqual(CLEAN_LEDGER);
  });

  it('shrinks a hold by non-final costs and releases it on the final event', async () => {
    const t = await tenant(10_000_000n);
    await hold(t, 'req_hold');
    const first = usageEvent({
      requestId: 'req_hold',
      ...t,
      model: 'gpt-4o',
      final: false,
      outcome: 'failed',
    });
    const c = await h.consumer('holds');
    await h.xadd(first);
    await until(async () => (await getHold(h.db, 'req_hold')) === 50_000n - expectedCost(first), {
      what: 'hold shrunk',
    });
    await h.xadd(usageEvent({ requestId: 'req_hold', ...t, hop: 1 }));
    await until(async () => (await getHold(h.db, 'req_hold')) === undefined, { what: 'hold released' });
    expect(await checkLedgerInvariants(h.db)).toEqual(CLEAN_LEDGER);
    await c.stop();
  });

  it('reports tenants settled below zero (a provider billed past the hold) on the gauges an alert reads', async () => {
    const t = await tenant(1_000n);
    await hold(t, 'req_overdrawn');
    // 1M output tokens of gpt-4o-mini: $0.60, far past the 1,000 µUSD balance and the hold.
    const event = usageEvent({ requestId: 'req_overdrawn', ...t, outputTokens: 1_000_000 });
    const c = await h.consumer('overdrawn');
    await h.xadd(event);
    await until(async () => (await getBalance(h.db, t.account)).balanceMicros < 0n, { what: 'settled' });
    const metrics = createMetrics();
    const sweeper = startHoldSweeper({ db: h.db, metrics, log: pino({ level: 'silent' }) }, 60_000);
    await until(async () => ((await metricValue(metrics.overdrawn)) > 0 ? true : undefined), {
      what: 'the sweep',
    });
    await sweeper.stop();
    const { balanceMicros } = await getBalance(h.db, t.account);
    expect(await metricValue(metrics.overdrawn)).toBeGreaterThanOrEqual(1);
    expect(await metricValue(metrics.overdrawnMicros)).toBeGreaterThanOrEqual(Number(-balanceMicros));
    expect(await checkLedgerInvariants(h.db)).toEqual(CLEAN_LEDGER);
    await c.stop();
  });

  describe('a final event of a request whose final event is settled already (a run Redis lost the end of)', () => {
    const priced = (e: UsageEvent, costMicros = 1_000n) => ({ event: e, costMicros, unpriced: false });
    const rows = async (table: string, requestId: string) =>
      (
        await h.db.execute<{ id: string; final?: boolean; cost: string }>(
          sql.raw(
            `SELECT id, ${table === 'usage_events' ? 'final, ' : ''}cost_micros::text AS cost FROM ${table}
              WHERE request_id = '${requestId}' ORDER BY id`,
          ),
        )
      ).rows;

    it('is recorded in rerun_calls, charged to no one, and gives no lease share back twice', async () => {
      const t = await tenant(10_000_000n);
      await lease(t, 'lease_rerun');
      const hold = { id: 'lease_rerun', micros: '10000' };
      const first = usageEvent({ requestId: 'req_rr1', ...t, attempt: 1, hold });
      const r1 = await settleBatch(h.db, [priced(first)]);
      expect(r1.inserted).toHaveLength(1);
      expect(await getHold(h.db, 'lease_rerun')).toBe(20_000n);
      const balance = (await getBalance(h.db, t.account)).balanceMicros;

      // The run again (attempt 2: the queue forgot attempt 1 ended), and its redelivery.
      const again = usageEvent({ requestId: 'req_rr1', ...t, attempt: 2, hold });
      for (const _ of [1, 2]) {
        const r = await settleBatch(h.db, [priced(again, 1_234n)]);
        expect(r.inserted).toEqual([]);
        expect(r.transactionId).toBeUndefined();
        expect(r.reruns.length + r.duplicates).toBe(1);
      }
      expect(await rows('usage_events', 'req_rr1')).toEqual([{ id: first.id, final: true, cost: '1000' }]);
      expect(await rows('rerun_calls', 'req_rr1')).toEqual([{ id: again.id, cost: '1234' }]);
      expect((await getBalance(h.db, t.account)).balanceMicros).toBe(balance);
      expect(await getHold(h.db, 'lease_rerun')).toBe(20_000n);
      // Any later event of that call is a duplicate, even one that is not final.
      const r = await settleBatch(h.db, [
        priced({ ...again, final: false, outcome: 'failed', estimated: true }),
      ]);
      expect(r.inserted).toEqual([]);
      expect((await getBalance(h.db, t.account)).balanceMicros).toBe(balance);
      expect(await checkLedgerInvariants(h.db)).toEqual(CLEAN_LEDGER);
    });

    it("two final events of a request new in one batch: the earlier call's stands", async () => {
      const t = await tenant(10_000_000n);
      const at = Date.now();
      // attempt 10 ends first: ordered by when the call ended, not by the id's text.
      const early = usageEvent({ requestId: 'req_rr2', ...t, attempt: 10, at });
      const late = usageEvent({ requestId: 'req_rr2', ...t, attempt: 2, at: at + 5 });
      const balance = (await getBalance(h.db, t.account)).balanceMicros;
      const r = await settleBatch(h.db, [priced(late, 700n), priced(early, 500n)]);
      expect(r.inserted.map((p) => p.event.id)).toEqual([early.id]);
      expect(r.reruns.map((x) => x.id)).toEqual([late.id]);
      expect(r.duplicates).toBe(0);
      expect((await getBalance(h.db, t.account)).balanceMicros).toBe(balance - 500n);
      expect(await rows('rerun_calls', 'req_rr2')).toEqual([{ id: late.id, cost: '700' }]);
      expect(await checkLedgerInvariants(h.db)).toEqual(CLEAN_LEDGER);
    });

    it("shows in the admin's spend report next to what was charged, also for a group only re-runs reached", async () => {
      const t = await tenant(10_000_000n);
      const first = usageEvent({ requestId: 'req_rr4', ...t, attempt: 1 });
      // The re-run went on to the route's next hop, another provider's model.
      const again = usageEvent({
        requestId: 'req_rr4',
        ...t,
        hop: 1,
        attempt: 1,
        provider: 'anthropic',
        model: 'claude-haiku-4-5',
      });
      await settleBatch(h.db, [priced(first, 900n)]);
      await settleBatch(h.db, [priced(again, 400n)]);
      const byKey = (await getSpend(h.db, { group: 'key', days: 1 })).filter((r) => r.group === t.key);
      expect(byKey.map((r) => [r.calls, r.costMicros, r.rerunCalls, r.rerunCostMicros])).toEqual([
        [1, 900n, 1, 400n],
      ]);
      const byModel = await getSpend(h.db, { group: 'model', days: 1 });
      const rerunOnly = byModel.find((r) => r.group === 'anthropic/claude-haiku-4-5');
      expect(rerunOnly?.calls).toBe(0);
      expect(rerunOnly?.costMicros).toBe(0n);
      expect(rerunOnly?.rerunCalls).toBeGreaterThanOrEqual(1);
    });

    it("a final event for a call settled already, while another call is the request's final: not final, releases nothing", async () => {
      const t = await tenant(10_000_000n);
      await hold(t, 'req_rr3');
      // The re-run's call settled first, not final; then the request's final event; then a final
      // event for that first call (e.g. its estimate as a cut-off answer's end).
      const call = usageEvent({ requestId: 'req_rr3', ...t, attempt: 1, final: false, outcome: 'failed' });
      const end = usageEvent({ requestId: 'req_rr3', ...t, attempt: 2 });
      await settleBatch(h.db, [priced(call)]);
      await settleBatch(h.db, [priced(end)]);
      expect(await getHold(h.db, 'req_rr3')).toBeUndefined();
      await hold(t, 'req_rr3');
      const r = await settleBatch(h.db, [priced({ ...call, final: true, estimated: true })]);
      expect(r.inserted).toEqual([]);
      expect(r.reruns).toEqual([]);
      expect(await rows('usage_events', 'req_rr3')).toEqual([
        { id: call.id, final: false, cost: '1000' },
        { id: end.id, final: true, cost: '1000' },
      ]);
      // (The hold placed again is not one the late event may release.)
      expect(await getHold(h.db, 'req_rr3')).toBe(50_000n);
      expect(await checkLedgerInvariants(h.db)).toEqual(CLEAN_LEDGER);
    });
  });

  it('gives a leased request its share back on its final event, and drops an emptied lease', async () => {
    const t = await tenant(10_000_000n);
    await lease(t, 'lease_test');
    const hold = { id: 'lease_test', micros: '10000' };
    const c = await h.consumer('leases');
    // A failed (non-final) call of a leased request leaves the lease whole; its final event gives the share back.
    await h.xadd(usageEvent({ requestId: 'req_l1', ...t, final: false, outcome: 'failed' }));
    await h.xadd(usageEvent({ requestId: 'req_l1', ...t, hop: 1, hold }));
    await until(async () => (await getHold(h.db, 'lease_test')) === 20_000n, { what: 'share released' });
    // The same final event again (redelivery) gives nothing back twice.
    await h.xadd(usageEvent({ requestId: 'req_l1', ...t, hop: 1, hold }));
    await h.xadd(usageEvent({ requestId: 'req_l2', ...t, hold }));
    await until(
      async () => {
        const st = await h.usageStatus();
        return st.pending === 0 && st.backlog === 0;
      },
      { what: 'all settled' },
    );
    expect(await getHold(h.db, 'lease_test')).toBe(10_000n);
    await h.xadd(usageEvent({ requestId: 'req_l3', ...t, hold }));
    await until(
      async () =>
        (await h.db.execute(sql`SELECT 1 FROM holds WHERE request_id = 'lease_test'`)).rows.length === 0,
      { what: 'empty lease dropped' },
    );
    expect(await checkLedgerInvariants(h.db)).toEqual(CLEAN_LEDGER);
    await c.stop();
  });
});
