import { bigint, index, pgTable, text, timestamp } from 'drizzle-orm/pg-core';

/**
 * Give-backs applied to holds (the unused rest of a budget lease, a refused request's share), by
 * the id the giver chose once: a give-back retried after a lost reply (the UPDATE committed, the
 * answer never arrived) finds its id here and shrinks nothing twice. Kept a day, then swept.
 */
export const holdGivebacks = pgTable(
  'hold_givebacks',
  {
    givebackId: text('giveback_id').primaryKey(),
    holdId: text('hold_id').notNull(),
    amountMicros: bigint('amount_micros', { mode: 'bigint' }).notNull(),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [index('hold_givebacks_created_idx').on(t.createdAt)],
);
