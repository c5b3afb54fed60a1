import { bigint, index, pgTable, text } from 'drizzle-orm/pg-core';
import { journalTransactions } from './journal-transactions.ts';
import { ledgerAccounts } from './ledger-accounts.ts';

/**
 * One leg of a journal transaction: `amount_micros` is added to the ledger account's balance.
 * A settlement transaction posts a batch of usage events with one leg per tenant and one per
 * provider (each the sum of its events' costs); every event names its transaction
 * (`usage_events.transaction_id`), so each leg is reproducible from the events it sums.
 */
export const journalEntries = pgTable(
  'journal_entries',
  {
    id: bigint('id', { mode: 'bigint' }).primaryKey().generatedAlwaysAsIdentity(),
    transactionId: text('transaction_id')
      .notNull()
      .references(() => journalTransactions.id),
    ledgerAccountId: text('ledger_account_id')
      .notNull()
      .references(() => ledgerAccounts.id),
    amountMicros: bigint('amount_micros', { mode: 'bigint' }).notNull(),
  },
  (t) => [
    index('journal_entries_transaction_idx').on(t.transactionId),
    index('journal_entries_ledger_account_idx').on(t.ledgerAccountId),
  ],
);
