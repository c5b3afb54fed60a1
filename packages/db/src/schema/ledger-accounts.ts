import { sql } from 'drizzle-orm';
import { bigint, pgTable, text, timestamp } from 'drizzle-orm/pg-core';

/**
 * Ledger accounts: `tenant:<acct_…>` (a tenant's balance), `funding` (where top-ups come from) and
 * `provider:<name>` (what we owe each provider). Sign convention: an entry's amount is added to the
 * account's balance, so a tenant's balance is what it may spend, `funding` goes negative by every
 * top-up, and a provider account grows by every settled cost. Every transaction sums to zero.
 * `balance_micros` is updated in the same transaction as the entries that change it.
 */
export const ledgerAccounts = pgTable('ledger_accounts', {
  id: text('id').primaryKey(),
  kind: text('kind', { enum: ['tenant', 'funding', 'provider'] }).notNull(),
  /** The tenant account, for `tenant` ledger accounts. */
  accountId: text('account_id'),
  balanceMicros: bigint('balance_micros', { mode: 'bigint' }).notNull().default(sql`0`),
  updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
});

export const FUNDING_LEDGER = 'funding';
export const tenantLedger = (accountId: string): string => `tenant:${accountId}`;
export const providerLedger = (provider: string): string => `provider:${provider}`;
