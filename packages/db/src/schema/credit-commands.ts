import { sql } from 'drizzle-orm';
import { bigint, check, pgTable, text, timestamp } from 'drizzle-orm/pg-core';
import { journalTransactions } from './journal-transactions.ts';

/**
 * The outcome of every credit command billing executed, one row per idempotency key (the key that
 * makes a command apply once, however often it is delivered). Billing writes the row in the same
 * transaction as the credit it posts (or instead of it, when it refuses the command); the ingress
 * reads it to answer the admin who asked. No foreign key on `account_id`: a refusal for an unknown
 * account is recorded too.
 */
export const creditCommands = pgTable(
  'credit_commands',
  {
    idempotencyKey: text('idempotency_key').primaryKey(),
    accountId: text('account_id').notNull(),
    amountMicros: bigint('amount_micros', { mode: 'bigint' }).notNull(),
    reference: text('reference'),
    status: text('status', { enum: ['applied', 'refused'] }).notNull(),
    /** Why a command was refused (`unknown_account`, `invalid`). */
    reason: text('reason'),
    /** The journal transaction that posted the credit (applied only). */
    transactionId: text('transaction_id').references(() => journalTransactions.id),
    /** The tenant's balance right after the credit (null for credits recorded before commands existed). */
    balanceAfterMicros: bigint('balance_after_micros', { mode: 'bigint' }),
    requestedAt: timestamp('requested_at', { withTimezone: true }).notNull(),
    decidedAt: timestamp('decided_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    check(
      'credit_commands_outcome_check',
      sql`(${t.status} = 'applied' AND ${t.transactionId} IS NOT NULL AND ${t.reason} IS NULL)
       OR (${t.status} = 'refused' AND ${t.transactionId} IS NULL AND ${t.reason} IS NOT NULL)`,
    ),
  ],
);
