import { pgTable, text, timestamp } from 'drizzle-orm/pg-core';

/** A tenant: one balance, many API keys. Never deleted (the ledger references it forever). */
export const accounts = pgTable('accounts', {
  id: text('id').primaryKey(),
  name: text('name').notNull(),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
});
