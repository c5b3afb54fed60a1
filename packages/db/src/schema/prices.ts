import { numeric, pgTable, primaryKey, text, timestamp } from 'drizzle-orm/pg-core';

/**
 * USD per million tokens, exact decimals, per provider/model and effective date. An event is priced
 * with the latest row whose `effective_at` is at or before the event's time.
 */
export const prices = pgTable(
  'prices',
  {
    provider: text('provider').notNull(),
    model: text('model').notNull(),
    effectiveAt: timestamp('effective_at', { withTimezone: true }).notNull(),
    inputPerM: numeric('input_per_m', { precision: 20, scale: 6 }).notNull(),
    /** null = charged at the input price. */
    cachedInputPerM: numeric('cached_input_per_m', { precision: 20, scale: 6 }),
    /** null = charged at the input price. */
    cacheWritePerM: numeric('cache_write_per_m', { precision: 20, scale: 6 }),
    /** 1-hour cache writes; null = twice the input price (Anthropic's rule). */
    cacheWrite1hPerM: numeric('cache_write_1h_per_m', { precision: 20, scale: 6 }),
    outputPerM: numeric('output_per_m', { precision: 20, scale: 6 }).notNull(),
    updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [primaryKey({ columns: [t.provider, t.model, t.effectiveAt] })],
);
