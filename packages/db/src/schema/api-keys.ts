import { sql } from 'drizzle-orm';
import { bigint, boolean, index, integer, pgTable, text, timestamp } from 'drizzle-orm/pg-core';
import { accounts } from './accounts.ts';

/**
 * Tenant API keys. Only the sha256 of the key is stored (keys are high-entropy, so one fast hash
 * suffices); `prefix` is the non-secret part shown in listings and logs.
 */
export const apiKeys = pgTable(
  'api_keys',
  {
    id: text('id').primaryKey(),
    accountId: text('account_id')
      .notNull()
      .references(() => accounts.id),
    hash: text('hash').notNull().unique(),
    prefix: text('prefix').notNull(),
    name: text('name').notNull(),
    scopes: text('scopes').array().notNull().default(sql`'{}'::text[]`),
    revoked: boolean('revoked').notNull().default(false),
    revokedAt: timestamp('revoked_at', { withTimezone: true }),
    /** Lifetime spend cap for this key (settled + held), µUSD; null = no cap. */
    spendLimitMicros: bigint('spend_limit_micros', { mode: 'bigint' }),
    /** Settled spend of this key, µUSD; maintained by settlement in the same transaction as the ledger. */
    spentMicros: bigint('spent_micros', { mode: 'bigint' }).notNull().default(sql`0`),
    /** Model ids (or aliases) this key may call; null = any. */
    allowedModels: text('allowed_models').array(),
    /** Requests per minute with this key (every ingress process); null = no limit. */
    rpmLimit: integer('rpm_limit'),
    /** Tokens (estimated at admission: prompt + max output) per minute with this key; null = none. */
    tpmLimit: integer('tpm_limit'),
    /** How long this key's interactive requests wait out a rate-limited provider; null = the default. */
    patienceMs: integer('patience_ms'),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [index('api_keys_account_idx').on(t.accountId)],
);
