import { eq, lte, sql } from 'drizzle-orm';
import type { Db } from './client.ts';
import { holds } from './schema/holds.ts';

export interface PlaceHoldOpts {
  requestId: string;
  accountId: string;
  keyId: string;
  amountMicros: bigint;
  expiresAt: Date;
}

/**
 * A refusal's `held`: holds of other work are what make it short (the balance, or the key's limit,
 * alone covers the amount), decided with the refusal under the account's lock (migration 0011).
 */
export type PlaceHoldResult =
  | { ok: true }
  | { ok: false; reason: 'insufficient_balance' | 'key_limit'; held: boolean };

/**
 * Reserves `amountMicros` for a request before it is queued: one round trip, atomic (the
 * `sy_place_hold` function locks the tenant's balance row, see migration 0001). Admitted only when
 * balance − active holds covers it and, if the key has a spend limit, its settled spend + active
 * holds + this amount stay within it. Placing the same request twice admits it once.
 */
export async function placeHold(db: Db, opts: PlaceHoldOpts): Promise<PlaceHoldResult> {
  if (opts.amountMicros < 0n) throw new RangeError('hold amount must not be negative');
  // The expiry travels as a lifetime, placed on Postgres's clock: an ingress whose wall clock is
  // minutes behind would otherwise place holds that are expired (not counted) from birth.
  const r = await db.$client.query<{ r: string }>(
    "SELECT sy_place_hold($1, $2, $3, $4, now() + $5::double precision * interval '1 millisecond') AS r",
    [
      opts.requestId,
      opts.accountId,
      opts.keyId,
      opts.amountMicros.toString(),
      opts.expiresAt.getTime() - Date.now(),
    ],
  );
  const res = r.rows[0]?.r;
  if (res === 'ok') return { ok: true };
  const held = res?.endsWith('_held') === true;
  if (res?.startsWith('key_limit')) return { ok: false, reason: 'key_limit', held };
  return { ok: false, reason: 'insufficient_balance', held };
}

/** Drops a request's hold (the request was refused after admission, or settled). Idempotent. */
export async function releaseHold(db: Db, requestId: string): Promise<void> {
  await db.delete(holds).where(eq(holds.requestId, requestId));
}

/**
 * Deletes holds past their expiry (requests that never settled: lost jobs). Expired holds already
 * stop counting at `expires_at`; this sweep only reclaims the rows. Returns how many were removed.
 * Expiry is judged by Postgres's clock (`now()`), as everywhere holds are counted: a billing process
 * whose wall clock jumped ahead must not sweep live holds.
 */
export async function expireHolds(db: Db, now?: Date): Promise<number> {
  const rows = await db
    .delete(holds)
    .where(lte(holds.expiresAt, now ?? sql`now()`))
    .returning({ id: holds.requestId });
  return rows.length;
}

/** Sum of a request's active hold (0 when none): for tests and diagnostics. */
export async function getHold(db: Db, requestId: string): Promise<bigint | undefined> {
  const [row] = await db
    .select({ a: holds.amountMicros })
    .from(holds)
    .where(sql`${holds.requestId} = ${requestId} AND ${holds.expiresAt} > now()`);
  return row?.a;
}

/**
 * Gives back `amountMicros` of a hold (the unused rest of a budget lease, or one request's share of
 * it) and drops the row once nothing is left. Idempotent by `givebackId`, chosen once by the giver
 * and reused on every retry: the give-back is recorded in the same statement that shrinks the hold,
 * so a retry after a lost reply (committed, answer lost) gives nothing back twice. A missing row is
 * a no-op.
 */
export async function shrinkHold(
  db: Db,
  holdId: string,
  amountMicros: bigint,
  givebackId: string,
): Promise<void> {
  if (amountMicros > 0n) {
    await db.$client.query(
      `WITH g AS (
         INSERT INTO hold_givebacks (giveback_id, hold_id, amount_micros) VALUES ($3, $1, $2::bigint)
         ON CONFLICT (giveback_id) DO NOTHING RETURNING 1)
       UPDATE holds SET amount_micros = greatest(amount_micros - $2::bigint, 0)
        WHERE request_id = $1 AND EXISTS (SELECT 1 FROM g)`,
      [holdId, amountMicros.toString(), givebackId],
    );
  }
  await db.$client.query('DELETE FROM holds WHERE request_id = $1 AND amount_micros <= 0', [holdId]);
}

/** Forgets give-backs older than `olderThanMs` (their retries are long over). Returns how many. */
export async function sweepGivebacks(db: Db, olderThanMs = 86_400_000): Promise<number> {
  const r = await db.$client.query(
    `DELETE FROM hold_givebacks WHERE created_at < now() - make_interval(secs => $1::double precision / 1000)`,
    [olderThanMs],
  );
  return r.rowCount ?? 0;
}

/** Tenant accounts whose balance is below zero, and by how much in all (µUSD). */
export async function overdrawn(db: Db): Promise<{ accounts: number; micros: bigint }> {
  const r = await db.$client.query<{ n: string; micros: string }>(
    `SELECT count(*)::text AS n, coalesce(-sum(balance_micros), 0)::text AS micros
       FROM ledger_accounts WHERE kind = 'tenant' AND balance_micros < 0`,
  );
  return { accounts: Number(r.rows[0]?.n ?? 0), micros: BigInt(r.rows[0]?.micros ?? 0) };
}
