import { bigint, boolean, index, integer, pgTable, text, timestamp } from 'drizzle-orm/pg-core';

/**
 * The columns of one provider call (the usage event's): a usage event's row, and a re-run call's
 * (`rerun_calls`), which is the same call charged to no one.
 */
export const callColumns = {
  id: text('id').primaryKey(),
  accountId: text('account_id').notNull(),
  keyId: text('key_id').notNull(),
  requestId: text('request_id').notNull(),
  provider: text('provider').notNull(),
  model: text('model').notNull(),
  hop: integer('hop').notNull(),
  attempt: integer('attempt').notNull(),
  inputTokens: integer('input_tokens').notNull(),
  cachedInputTokens: integer('cached_input_tokens').notNull(),
  cacheWriteTokens: integer('cache_write_tokens').notNull(),
  /** Of the cache writes, those with a 1-hour TTL (priced apart). */
  cacheWrite1hTokens: integer('cache_write_1h_tokens').notNull().default(0),
  outputTokens: integer('output_tokens').notNull(),
  reasoningTokens: integer('reasoning_tokens').notNull(),
  costMicros: bigint('cost_micros', { mode: 'bigint' }).notNull(),
  /** No price was known for the model: recorded at cost 0. */
  unpriced: boolean('unpriced').notNull().default(false),
  outcome: text('outcome', { enum: ['success', 'failed', 'cancelled'] }).notNull(),
};

/**
 * One row per provider call, under the event's stable id: the unique key that makes settlement
 * idempotent. No foreign keys on purpose: a settlement batch must never fail on a reference.
 */
export const usageEvents = pgTable(
  'usage_events',
  {
    ...callColumns,
    final: boolean('final').notNull(),
    occurredAt: timestamp('occurred_at', { withTimezone: true }).notNull(),
    settledAt: timestamp('settled_at', { withTimezone: true }).notNull().defaultNow(),
    /** The journal transaction that posted this event's cost (null when the cost is 0). */
    transactionId: text('transaction_id'),
    /**
     * The tokens are the gateway's estimate (a call that died or was cut before its usage came):
     * the call's own usage, should it come later, replaces them (migration 0013, `sy_settle`).
     */
    estimated: boolean('estimated').notNull().default(false),
    /** Replaced by the call's own usage: the cost first posted (by `transaction_id`)... */
    estimatedCostMicros: bigint('estimated_cost_micros', { mode: 'bigint' }),
    /** ...and the journal transaction that posted the difference (`cost_micros` − that). */
    correctionTransactionId: text('correction_transaction_id'),
  },
  (t) => [
    index('usage_events_account_time_idx').on(t.accountId, t.occurredAt),
    index('usage_events_request_idx').on(t.requestId),
  ],
);
