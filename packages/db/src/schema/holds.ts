import { bigint, index, pgTable, text, timestamp } from 'drizzle-orm/pg-core';

/**
 * Admission holds: money reserved for an in-flight request (by `max_tokens`) before it is queued.
 * Available = balance − active holds. Settlement shrinks a hold by each settled cost and deletes it
 * on the request's final event; holds of lost requests stop counting at `expires_at` and are swept.
 */
export const holds = pgTable(
  'holds',
  {
    requestId: text('request_id').primaryKey(),
    accountId: text('account_id').notNull(),
    keyId: text('key_id').notNull(),
    amountMicros: bigint('amount_micros', { mode: 'bigint' }).notNull(),
    expiresAt: timestamp('expires_at', { withTimezone: true }).notNull(),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    index('holds_account_idx').on(t.accountId, t.expiresAt),
    index('holds_key_idx').on(t.keyId, t.expiresAt),
    index('holds_expires_idx').on(t.expiresAt),
  ],
);
