import { sql } from 'drizzle-orm';
import type { Db } from './client.ts';

export interface LedgerViolations {
  /** I3: transactions whose entries do not sum to zero. */
  unbalancedTransactions: string[];
  /** I3: the sum of every entry (must be 0). */
  globalSumMicros: bigint;
  /** I4: ledger accounts whose cached balance differs from the sum of their entries. */
  balanceDrift: string[];
  /** I2: settlement legs that differ from the sum of their events' costs (posted twice, or not at all). */
  misSettledEvents: string[];
  /** Keys whose settled-spend counter differs from the sum of their events' cost. */
  keySpendDrift: string[];
}

/**
 * The ledger invariants (reliability.md §4, I2–I4) as SQL. Used by tests and fault runs; cheap
 * enough to run as a periodic drift check in production on modest ledgers.
 */
export async function checkLedgerInvariants(db: Db): Promise<LedgerViolations> {
  const q = async (query: ReturnType<typeof sql>) =>
    (await db.execute<{ id: string }>(query)).rows.map((r) => r.id);
  const unbalancedTransactions = await q(sql`
    SELECT transaction_id AS id FROM journal_entries GROUP BY transaction_id HAVING sum(amount_micros) <> 0`);
  const g = await db.execute<{ s: string }>(
    sql`SELECT coalesce(sum(amount_micros), 0)::text AS s FROM journal_entries`,
  );
  const balanceDrift = await q(sql`
    SELECT l.id FROM ledger_accounts l
      LEFT JOIN (SELECT ledger_account_id, sum(amount_micros) AS s FROM journal_entries GROUP BY 1) e
        ON e.ledger_account_id = l.id
     WHERE l.balance_micros <> coalesce(e.s, 0)`);
  // Each settlement leg must equal the sum of the events that name its transaction (tenant legs
  // negative, provider legs positive), at the cost first posted for them (an estimate a call's own
  // usage replaced: `estimated_cost_micros`); each correction leg, the sum of the differences its
  // events name. A costed event without a transaction was never posted.
  const misSettledEvents = await q(sql`
    WITH posted AS (
      SELECT account_id, provider, transaction_id AS tx,
             coalesce(estimated_cost_micros, cost_micros) AS c FROM usage_events
      UNION ALL
      SELECT account_id, provider, correction_transaction_id,
             cost_micros - estimated_cost_micros FROM usage_events
       WHERE estimated_cost_micros IS NOT NULL AND cost_micros <> estimated_cost_micros),
    ev AS (
      SELECT tx AS transaction_id, 'tenant:' || account_id AS la, -sum(c) AS s
        FROM posted WHERE c <> 0 GROUP BY 1, 2 HAVING sum(c) <> 0
      UNION ALL
      SELECT tx, 'provider:' || provider, sum(c)
        FROM posted WHERE c <> 0 GROUP BY 1, 2 HAVING sum(c) <> 0),
    en AS (
      SELECT e.transaction_id, e.ledger_account_id AS la, sum(e.amount_micros) AS s
        FROM journal_entries e JOIN journal_transactions t ON t.id = e.transaction_id
       WHERE t.kind IN ('settlement', 'correction') GROUP BY 1, 2)
    SELECT coalesce(ev.transaction_id, en.transaction_id, '(none)') || ' ' || coalesce(ev.la, en.la) AS id
      FROM ev FULL JOIN en ON ev.transaction_id = en.transaction_id AND ev.la = en.la
     WHERE ev.s IS DISTINCT FROM en.s
    UNION ALL
    SELECT id FROM usage_events
     WHERE coalesce(estimated_cost_micros, cost_micros) = 0 AND transaction_id IS NOT NULL`);
  const keySpendDrift = await q(sql`
    SELECT k.id FROM api_keys k
      LEFT JOIN (SELECT key_id, sum(cost_micros) AS s FROM usage_events GROUP BY 1) u ON u.key_id = k.id
     WHERE k.spent_micros <> coalesce(u.s, 0)`);
  return {
    unbalancedTransactions,
    globalSumMicros: BigInt(g.rows[0]?.s ?? '0'),
    balanceDrift,
    misSettledEvents,
    keySpendDrift,
  };
}

/** The violations of a clean ledger, for `expect(...).toEqual(CLEAN_LEDGER)`. */
export const CLEAN_LEDGER: LedgerViolations = {
  unbalancedTransactions: [],
  globalSumMicros: 0n,
  balanceDrift: [],
  misSettledEvents: [],
  keySpendDrift: [],
};
