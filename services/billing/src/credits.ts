import { CreditCommand } from '@faregate/contracts/credits';
import { postCredit, UnknownAccountError } from '@faregate/db/accounts';
import { lockKeyFor } from '@faregate/db/api-keys';
import type { Db } from '@faregate/db/client';
import { creditCommands } from '@faregate/db/schema/credit-commands';
import { eq, sql } from 'drizzle-orm';

/** What executing a credit command did. `duplicate`: an outcome was already recorded; nothing changed. */
export type CreditResult =
  | { result: 'applied'; transactionId: string; balanceAfterMicros: bigint }
  | { result: 'refused'; reason: 'unknown_account' | 'invalid' }
  | { result: 'duplicate' };

export type ParsedCredit = { ok: true; command: CreditCommand } | { ok: false; reason: string };

/** Parses one credits-stream entry's fields (`c` = JSON CreditCommand). */
export function parseCreditEntry(fields: string[] | null): ParsedCredit {
  if (!fields) return { ok: false, reason: 'entry deleted' };
  let raw: string | undefined;
  for (let i = 0; i + 1 < fields.length; i += 2) if (fields[i] === 'c') raw = fields[i + 1];
  if (raw === undefined) return { ok: false, reason: 'no "c" field' };
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch {
    return { ok: false, reason: 'invalid JSON' };
  }
  const r = CreditCommand.safeParse(json);
  if (!r.success)
    return { ok: false, reason: r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ') };
  return { ok: true, command: r.data };
}

/**
 * Executes a credit command exactly once per idempotency key, in ONE Postgres transaction: the
 * credit's journal transaction, balances and the command's outcome row commit together, so a
 * redelivered (or twice-queued) command finds its outcome and changes nothing. An account that does
 * not exist is refused, and the refusal is recorded the same way (the ingress answers 404 from it).
 */
export async function applyCreditCommand(db: Db, cmd: CreditCommand): Promise<CreditResult> {
  const amountMicros = BigInt(cmd.amountMicros);
  return db.transaction(async (tx) => {
    // Two replicas holding the same command (a reclaim, or a command queued twice) take turns; the
    // second sees the first's outcome. postCredit takes the same lock again (advisory locks nest).
    await tx.execute(sql`SELECT pg_advisory_xact_lock(${lockKeyFor(`credit:${cmd.key}`)})`);
    const [prior] = await tx
      .select({ key: creditCommands.idempotencyKey })
      .from(creditCommands)
      .where(eq(creditCommands.idempotencyKey, cmd.key));
    if (prior) return { result: 'duplicate' };
    const row = {
      idempotencyKey: cmd.key,
      accountId: cmd.account,
      amountMicros,
      reference: cmd.reference,
      requestedAt: new Date(cmd.at),
    };
    let posted: { transactionId: string; balanceMicros: bigint };
    try {
      posted = await postCredit(tx, {
        accountId: cmd.account,
        amountMicros,
        reference: cmd.reference ?? undefined,
        idempotencyKey: cmd.key,
      });
    } catch (err) {
      // Thrown by our own check after its query succeeded: the transaction is still usable.
      if (!(err instanceof UnknownAccountError)) throw err;
      await tx.insert(creditCommands).values({ ...row, status: 'refused', reason: 'unknown_account' });
      return { result: 'refused', reason: 'unknown_account' };
    }
    await tx.insert(creditCommands).values({
      ...row,
      status: 'applied',
      transactionId: posted.transactionId,
      balanceAfterMicros: posted.balanceMicros,
    });
    return {
      result: 'applied',
      transactionId: posted.transactionId,
      balanceAfterMicros: posted.balanceMicros,
    };
  });
}

/**
 * Records that Postgres refused a command's content (it can never apply): the waiting admin gets a
 * 400 rather than a 503 forever. Without the reference, in case that was the problem. Idempotent.
 */
export async function refuseCreditCommand(
  db: Db,
  cmd: CreditCommand,
  reason: 'invalid' | 'out_of_range' = 'invalid',
): Promise<void> {
  await db
    .insert(creditCommands)
    .values({
      idempotencyKey: cmd.key,
      accountId: cmd.account,
      amountMicros: BigInt(cmd.amountMicros),
      reference: null,
      requestedAt: new Date(cmd.at),
      status: 'refused',
      reason,
    })
    .onConflictDoNothing();
}
