import { integer, pgTable, text, timestamp } from 'drizzle-orm/pg-core';

/** A tenant: one balance, many API keys. Never deleted (the ledger references it forever). */
export const accounts = pgTable('accounts', {
  id: text('id').primaryKey(),
  name: text('name').notNull(),
  /** Requests per minute over all of the account's keys (every ingress process); null = no limit. */
  rpmLimit: integer('rpm_limit'),
  /** Tokens (estimated at admission: prompt + max output) per minute over all its keys; null = none. */
  tpmLimit: integer('tpm_limit'),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
});
