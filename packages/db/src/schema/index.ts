// The drizzle schema: one file per table. This is the package's schema entry (drizzle-kit and the client).
export { accounts } from './accounts.ts';
export { apiKeys } from './api-keys.ts';
export { creditCommands } from './credit-commands.ts';
export { holdGivebacks } from './hold-givebacks.ts';
export { holds } from './holds.ts';
export { journalEntries } from './journal-entries.ts';
export { journalTransactions } from './journal-transactions.ts';
export { FUNDING_LEDGER, ledgerAccounts, providerLedger, tenantLedger } from './ledger-accounts.ts';
export { prices } from './prices.ts';
export { usageEvents } from './usage-events.ts';
export { rerunCalls } from './rerun-calls.ts';
export { idempotencyKeys } from './idempotency-keys.ts';
export { batches, batchLines } from './batches.ts';
export { fileChunks, files } from './files.ts';
