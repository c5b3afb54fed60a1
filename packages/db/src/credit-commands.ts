import { eq } from 'drizzle-orm';
import type { Db } from './client.ts';
import { creditCommands } from './schema/credit-commands.ts';

/** What billing decided about a credit command (a row of `credit_commands`). */
export type CreditOutcome =
  | {
      status: 'applied';
      accountId: string;
      amountMicros: bigint;
      transactionId: string;
      /** Null for credits recorded before commands existed. */
      balanceAfterMicros: bigint | null;
    }
  | { status: 'refused'; accountId: string; amountMicros: bigint; reason: string };

/** Billing's outcome for an idempotency key, or undefined while none is recorded. Read-only. */
export async function findCreditOutcome(db: Db, key: string): Promise<CreditOutcome | undefined> {
  const [row] = await db
    .select({
      status: creditCommands.status,
      accountId: creditCommands.accountId,
      amountMicros: creditCommands.amountMicros,
      reason: creditCommands.reason,
      transactionId: creditCommands.transactionId,
      balanceAfterMicros: creditCommands.balanceAfterMicros,
    })
    .from(creditCommands)
    .where(eq(creditCommands.idempotencyKey, key));
  if (!row) return undefined;
  const { accountId, amountMicros } = row;
  if (row.status === 'applied')
    return {
      status: 'applied',
      accountId,
      amountMicros,
      transactionId: row.transactionId ?? '',
      balanceAfterMicros: row.balanceAfterMicros,
    };
  return { status: 'refused', accountId, amountMicros, reason: row.reason ?? 'refused' };
}
