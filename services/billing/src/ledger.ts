import type { UsageEvent } from '@faregate/contracts/usage';
import { newId } from '@faregate/contracts/ids';
import type { Db } from '@faregate/db/client';
import { providerLedger, tenantLedger } from '@faregate/db/schema/ledger-accounts';

/** A validated usage event with its cost decided (see `pricing.ts` for the policy). */
export interface PricedEvent {
  event: UsageEvent;
  costMicros: bigint;
  unpriced: boolean;
}

export interface SettleResult {
  /** Events recorded now (first delivery). */
  inserted: PricedEvent[];
  /** Events already settled earlier: no-ops. */
  duplicates: number;
  /** The journal transaction posting this batch's cost (undefined when nothing cost money). */
  transactionId: string | undefined;
}

const add = (m: Map<string, bigint>, k: string, v: bigint) => m.set(k, (m.get(k) ?? 0n) + v);

/**
 * Settles a batch in ONE Postgres transaction: insert the events under their unique ids (a
 * duplicate is a no-op), then — for newly inserted events only — one journal transaction whose
 * entries move the events' cost from their tenants to `provider:<name>` (one leg per tenant and
 * per provider; each event names the transaction), the matching balance updates, each key's settled
 * spend, and the requests' admission holds (shrunk by the cost; deleted on the final event).
 * Statements are set-based (`unnest`) so a batch costs a fixed number of round trips.
 */
export async function settleBatch(db: Db, batch: PricedEvent[]): Promise<SettleResult> {
  // One row per id (the stream may carry the same event twice in one batch).
  const byId = new Map<string, PricedEvent>();
  for (const p of batch) if (!byId.has(p.event.id)) byId.set(p.event.id, p);
  const events = [...byId.values()].sort((a, b) => (a.event.id < b.event.id ? -1 : 1));
  if (events.length === 0) return { inserted: [], duplicates: batch.length, transactionId: undefined };

  const client = await db.$client.connect();
  let release: boolean | Error = false;
  try {
    await client.query('BEGIN');
    const txId = newId('txn');

    // Ledger accounts the batch may touch; created on first use, then locked in id order (every
    // multi-account writer locks in this order, so writers never deadlock with each other).
    const ledgerIds = new Map<string, [kind: string, accountId: string | null]>();
    for (const { event: e } of events) {
      ledgerIds.set(tenantLedger(e.account), ['tenant', e.account]);
      ledgerIds.set(providerLedger(e.provider), ['provider', null]);
    }
    const ids = [...ledgerIds.keys()].sort();
    await client.query(
      `INSERT INTO ledger_accounts (id, kind, account_id)
       SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) ON CONFLICT (id) DO NOTHING`,
      [ids, ids.map((i) => ledgerIds.get(i)![0]), ids.map((i) => ledgerIds.get(i)![1])],
    );
    await client.query('SELECT 1 FROM ledger_accounts WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE', [
      ids,
    ]);

    const col = <T>(f: (p: PricedEvent) => T) => events.map(f);
    const res = await client.query<{ id: string }>(
      `INSERT INTO usage_events (id, account_id, key_id, request_id, provider, model, hop, attempt,
         input_tokens, cached_input_tokens, cache_write_tokens, output_tokens, reasoning_tokens,
         cost_micros, unpriced, outcome, final, occurred_at, transaction_id)
       SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
         $7::int[], $8::int[], $9::int[], $10::int[], $11::int[], $12::int[], $13::int[], $14::bigint[],
         $15::bool[], $16::text[], $17::bool[], $18::timestamptz[], $19::text[])
       ON CONFLICT (id) DO NOTHING
       RETURNING id`,
      [
        col((p) => p.event.id),
        col((p) => p.event.account),
        col((p) => p.event.key),
        col((p) => p.event.requestId),
        col((p) => p.event.provider),
        col((p) => p.event.model),
        col((p) => p.event.hop),
        col((p) => p.event.attempt),
        col((p) => p.event.inputTokens),
        col((p) => p.event.cachedInputTokens),
        col((p) => p.event.cacheWriteTokens),
        col((p) => p.event.outputTokens),
        col((p) => p.event.reasoningTokens),
        col((p) => p.costMicros.toString()),
        col((p) => p.unpriced),
        col((p) => p.event.outcome),
        col((p) => p.event.final),
        col((p) => new Date(p.event.at).toISOString()),
        col((p) => (p.costMicros > 0n ? txId : null)),
      ],
    );
    const newIds = new Set(res.rows.map((r) => r.id));
    const inserted = events.filter((p) => newIds.has(p.event.id));

    const costed = inserted.filter((p) => p.costMicros > 0n);
    const balanceDelta = new Map<string, bigint>();
    const keySpend = new Map<string, bigint>();
    for (const { event: e, costMicros } of costed) {
      add(balanceDelta, tenantLedger(e.account), -costMicros);
      add(balanceDelta, providerLedger(e.provider), costMicros);
      add(keySpend, e.key, costMicros);
    }
    if (costed.length > 0) {
      await client.query(
        `INSERT INTO journal_transactions (id, kind, reference) VALUES ($1, 'settlement', $2)`,
        [txId, `usage: ${costed.length} event(s)`],
      );
      // One leg per ledger account (tenant or provider) per batch: the events name this
      // transaction, so each leg is the sum of its events' costs (checked by the invariants).
      const [legIds, legAmounts] = unzip(balanceDelta);
      await client.query(
        `INSERT INTO journal_entries (transaction_id, ledger_account_id, amount_micros)
         SELECT $1, * FROM unnest($2::text[], $3::bigint[])`,
        [txId, legIds, legAmounts],
      );
      await client.query(
        `UPDATE ledger_accounts l SET balance_micros = l.balance_micros + d.delta, updated_at = now()
         FROM unnest($1::text[], $2::bigint[]) AS d(id, delta) WHERE l.id = d.id`,
        [legIds, legAmounts],
      );
      const [keyIds, keyDeltas] = unzip(keySpend);
      await client.query(
        `UPDATE api_keys k SET spent_micros = k.spent_micros + d.delta
         FROM unnest($1::text[], $2::bigint[]) AS d(id, delta) WHERE k.id = d.id`,
        [keyIds, keyDeltas],
      );
    }

    // Holds. A request with its own hold row: the final event releases it; earlier (retried,
    // fallen-back) calls shrink it by what they cost, so money is never reserved twice for the same
    // tokens. A request admitted under a budget lease: the final event gives its share of the lease
    // back (earlier calls leave the share whole until then: reserved twice for a moment, never short),
    // and a lease row with nothing left is dropped.
    const ended = new Set<string>();
    const own = new Set<string>();
    const shrink = new Map<string, bigint>();
    for (const p of inserted) {
      if (!p.event.final) continue;
      ended.add(p.event.requestId);
      if (p.event.hold) add(shrink, p.event.hold.id, BigInt(p.event.hold.micros));
      else own.add(p.event.requestId);
    }
    // (A request admitted under a lease has no row of its own: shrinking it is a no-op.)
    for (const p of costed) if (!ended.has(p.event.requestId)) add(shrink, p.event.requestId, p.costMicros);
    if (own.size > 0) {
      await client.query('DELETE FROM holds WHERE request_id = ANY($1::text[])', [[...own]]);
    }
    if (shrink.size > 0) {
      const [holdIds, amounts] = unzip(shrink);
      await client.query(
        `UPDATE holds h SET amount_micros = greatest(h.amount_micros - d.amount, 0)
         FROM unnest($1::text[], $2::bigint[]) AS d(id, amount) WHERE h.request_id = d.id`,
        [holdIds, amounts],
      );
      await client.query('DELETE FROM holds WHERE request_id = ANY($1::text[]) AND amount_micros <= 0', [
        holdIds,
      ]);
    }
    await client.query('COMMIT');
    return {
      inserted,
      duplicates: batch.length - inserted.length,
      transactionId: costed.length > 0 ? txId : undefined,
    };
  } catch (err) {
    // A broken connection must not go back to the pool; a rollback failure means it is broken.
    await client.query('ROLLBACK').catch((e: Error) => {
      release = e;
    });
    throw err;
  } finally {
    client.release(release === false ? undefined : release);
  }
}

function unzip(m: Map<string, bigint>): [string[], string[]] {
  const keys: string[] = [];
  const vals: string[] = [];
  for (const [k, v] of m) {
    keys.push(k);
    vals.push(v.toString());
  }
  return [keys, vals];
}
