import { pgTable, text, timestamp } from 'drizzle-orm/pg-core';

/** A journal transaction: a set of entries that sum to zero. Immutable once written. */
export const journalTransactions = pgTable('journal_transactions', {
  id: text('id').primaryKey(),
  /** `correction`: a call's own usage replaced the estimate settled for it (usage_events). */
  kind: text('kind', { enum: ['credit', 'settlement', 'correction'] }).notNull(),
  reference: text('reference'),
  /** Caller-chosen key that makes a top-up safe to retry. */
  idempotencyKey: text('idempotency_key').unique(),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
});
