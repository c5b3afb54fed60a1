import { index, pgTable, text, timestamp } from 'drizzle-orm/pg-core';

/**
 * Which request (or batch) an `Idempotency-Key` named, kept where the money is. The key's record in
 * Redis answers retries (replays, waits for a running request); this row outlives a loss of Redis's
 * last writes (a kill -9 under `appendfsync everysec`, a failover to a lagging replica), after which
 * a retry with the same key and body runs again under the same id: billing charges a request once
 * (`rerun_calls`, migration 0015), and a batch create answers with the batch it made. `scope` is the
 * Redis record's key (the tenant, the API key and the key's digest); `fingerprint` the body's.
 */
export const idempotencyKeys = pgTable(
  'idempotency_keys',
  {
    scope: text('scope').primaryKey(),
    fingerprint: text('fingerprint').notNull(),
    /** The request id (`req_…`) or batch id (`batch_…`) the first request with the key was given. */
    resourceId: text('resource_id').notNull(),
    expiresAt: timestamp('expires_at', { withTimezone: true }).notNull(),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [index('idempotency_keys_expires_idx').on(t.expiresAt)],
);
