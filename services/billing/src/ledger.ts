import type { UsageEvent } from '@faregate/contracts/usage';
import { newId } from '@faregate/contracts/ids';
import type { Db } from '@faregate/db/client';

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
  /**
   * Estimates replaced now by their call's own usage at a different cost (the `correction` journal
   * transaction): the provider, and what the cost moved by (either sign). Not counted as duplicates.
   */
  corrections: Array<{ provider: string; deltaMicros: bigint }>;
  /**
   * Final events of requests whose final event was settled already under another call's id (a run of
   * a request that had ended, after Redis lost the writes that ended it): recorded in `rerun_calls`,
   * charged to no one (migration 0015). Not counted as duplicates.
   */
  reruns: Array<{ id: string; requestId: string; provider: string; costMicros: bigint }>;
  /** The journal transaction posting this batch's cost (undefined when nothing cost money). */
  transactionId: string | undefined;
}

/**
 * Settles a batch in ONE Postgres round trip (`sy_settle`, migrations 0009, 0010, 0013 and 0014; a
 * second, read-only, only when some event was not new: which ones were corrections), one transaction: insert
 * the events under their unique ids (a duplicate is a no-op, but for a call's own usage arriving after
 * the estimate settled for it, which replaces the estimate through a `correction` transaction), then — for newly inserted events only —
 * one journal transaction whose entries move the events' cost from their tenants to
 * `provider:<name>` (one leg per tenant and per provider; each event names the transaction), the
 * matching balance updates, each key's settled spend, and the requests' admission holds (shrunk by
 * the cost; deleted on the final event). The statements are set-based, in a function rather than
 * sent one by one: a dozen round trips per batch cost billing and Postgres more wake-ups than the
 * rows cost them.
 */
export async function settleBatch(db: Db, batch: PricedEvent[]): Promise<SettleResult> {
  // One row per id (the stream may carry the same event twice in one batch): the call's own usage
  // rather than an estimate of it, when both came.
  // Either may be the request's final event (a cut-off answer's estimate is): the one kept is then
  // final too, with the final one's lease share, so the hold is released as settling both would.
  const byId = new Map<string, PricedEvent>();
  for (const p of batch) {
    const had = byId.get(p.event.id);
    if (!had) {
      byId.set(p.event.id, p);
      continue;
    }
    const [keep, other] = had.event.estimated === true && p.event.estimated !== true ? [p, had] : [had, p];
    const final = other.event.final && !keep.event.final;
    byId.set(
      p.event.id,
      final ? { ...keep, event: { ...keep.event, final: true, hold: other.event.hold } } : keep,
    );
  }
  const events = [...byId.values()].sort((a, b) => (a.event.id < b.event.id ? -1 : 1));
  if (events.length === 0)
    return { inserted: [], duplicates: batch.length, corrections: [], reruns: [], transactionId: undefined };

  const txId = newId('txn');
  const col = <T>(f: (p: PricedEvent) => T) => events.map(f);
  const res = await db.$client.query<{ ids: string[] }>(
    `SELECT sy_settle($1, $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
       $8::int[], $9::int[], $10::int[], $11::int[], $12::int[], $13::int[], $14::int[], $15::bigint[],
       $16::bool[], $17::text[], $18::bool[], $19::timestamptz[], $20::text[], $21::bigint[],
       $22::int[], $23::bool[]) AS ids`,
    [
      txId,
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
      col((p) => p.event.hold?.id ?? null),
      col((p) => p.event.hold?.micros ?? null),
      col((p) => p.event.cacheWrite1hTokens ?? 0),
      col((p) => p.event.estimated === true),
    ],
  );
  const newIds = new Set(res.rows[0]?.ids ?? []);
  const inserted = events.filter((p) => newIds.has(p.event.id));
  // Only a call's own usage not inserted now can have replaced an estimate (sy_settle posts those
  // under `<txId>-c`): asked only then, so a batch of first deliveries costs no second round trip.
  // Looked up by id (the primary key): the correction column has no index. The batch is settled
  // already: a failure here costs the metrics the corrections (counted as duplicates), never a retry
  // of the batch (which would count its settled events as duplicates too).
  const maybeFixed = events.filter((p) => !newIds.has(p.event.id) && p.event.estimated !== true);
  const corrections =
    maybeFixed.length > 0
      ? await db.$client
          .query<{ provider: string; delta: string }>(
            `SELECT provider, (cost_micros - estimated_cost_micros)::text AS delta
               FROM usage_events WHERE id = ANY ($1::text[]) AND correction_transaction_id = $2`,
            [maybeFixed.map((p) => p.event.id), `${txId}-c`],
          )
          .then(
            (r) => r.rows.map((row) => ({ provider: row.provider, deltaMicros: BigInt(row.delta) })),
            () => [],
          )
      : [];
  // A final event not inserted may have been recorded as a re-run call (asked only then, by the
  // settlement's id, which names the rows it recorded).
  const reruns = events.some((p) => p.event.final && !newIds.has(p.event.id))
    ? await db.$client
        .query<{ id: string; request_id: string; provider: string; cost: string }>(
          'SELECT id, request_id, provider, cost_micros::text AS cost FROM rerun_calls WHERE batch_id = $1',
          [txId],
        )
        .then(
          (r) =>
            r.rows.map((row) => ({
              id: row.id,
              requestId: row.request_id,
              provider: row.provider,
              costMicros: BigInt(row.cost),
            })),
          () => [],
        )
    : [];
  return {
    inserted,
    duplicates: batch.length - inserted.length - corrections.length - reruns.length,
    corrections,
    reruns,
    transactionId: inserted.some((p) => p.costMicros > 0n) ? txId : undefined,
  };
}
