import { boolean, index, pgTable, text, timestamp } from 'drizzle-orm/pg-core';
import { callColumns } from './usage-events.ts';

/**
 * Provider calls made for a request whose final event was settled already, under another call's id:
 * a run of a request that had ended, made because Redis lost the writes that ended it (a kill -9
 * with `appendfsync everysec`, a failover to a replica that lagged) after billing had read them. The
 * caller asked once and is charged once (the first final event); this call is what the gateway paid
 * the provider and did not charge (`sy_settle`, migration 0015). No ledger entry names it; its
 * `cost_micros` is the call's listed price. The id is the call's usage event id.
 */
export const rerunCalls = pgTable(
  'rerun_calls',
  {
    ...callColumns,
    estimated: boolean('estimated').notNull().default(false),
    occurredAt: timestamp('occurred_at', { withTimezone: true }).notNull(),
    recordedAt: timestamp('recorded_at', { withTimezone: true }).notNull().defaultNow(),
    /** The settlement call that recorded it (`sy_settle`'s transaction id, which posts nothing for it). */
    batchId: text('batch_id').notNull(),
  },
  (t) => [index('rerun_calls_request_idx').on(t.requestId)],
);
