import { bigint, index, integer, json, jsonb, pgTable, primaryKey, text } from 'drizzle-orm/pg-core';

/**
 * Batches of the OpenAI Batch API: the durable state the batch driver works from (any ingress
 * process holding the lease drives it; a crash loses nothing). `*_at` are Unix seconds as shown.
 */
export const batches = pgTable(
  'batches',
  {
    id: text('id').primaryKey(),
    accountId: text('account_id').notNull(),
    keyId: text('key_id').notNull(),
    /** What the submitting key may do (scopes, allowed models, limits), kept for its lines. */
    principal: jsonb('principal').notNull(),
    endpoint: text('endpoint').notNull(),
    inputFileId: text('input_file_id').notNull(),
    completionWindow: text('completion_window').notNull(),
    metadata: jsonb('metadata'),
    /** `output_expires_after.seconds`: the output and error files expire this long after they are written. */
    outputExpiresAfter: integer('output_expires_after'),
    status: text('status').notNull(),
    /** The terminal status a `finalizing` batch ends in. */
    finalStatus: text('final_status'),
    errors: jsonb('errors'),
    outputFileId: text('output_file_id'),
    errorFileId: text('error_file_id'),
    total: integer('total').notNull().default(0),
    completed: integer('completed').notNull().default(0),
    failed: integer('failed').notNull().default(0),
    /**
     * The model the batch's lines name (the first line that names one), recorded once validated;
     * null before (and for job batches, which are shown as jobs).
     */
    model: text('model'),
    /**
     * Token usage of the lines that ended with an answer, summed as they are recorded (in the
     * transaction that counts them, so a line's tokens are added once): OpenAI's batch `usage`.
     */
    inputTokens: bigint('input_tokens', { mode: 'number' }).notNull().default(0),
    cachedTokens: bigint('cached_tokens', { mode: 'number' }).notNull().default(0),
    outputTokens: bigint('output_tokens', { mode: 'number' }).notNull().default(0),
    reasoningTokens: bigint('reasoning_tokens', { mode: 'number' }).notNull().default(0),
    totalTokens: bigint('total_tokens', { mode: 'number' }).notNull().default(0),
    createdAt: bigint('created_at', { mode: 'number' }).notNull(),
    inProgressAt: bigint('in_progress_at', { mode: 'number' }),
    expiresAt: bigint('expires_at', { mode: 'number' }).notNull(),
    finalizingAt: bigint('finalizing_at', { mode: 'number' }),
    completedAt: bigint('completed_at', { mode: 'number' }),
    failedAt: bigint('failed_at', { mode: 'number' }),
    expiredAt: bigint('expired_at', { mode: 'number' }),
    cancellingAt: bigint('cancelling_at', { mode: 'number' }),
    cancelledAt: bigint('cancelled_at', { mode: 'number' }),
    /** The driver process holding the batch, and until when (ms); another takes it over after. */
    leaseOwner: text('lease_owner'),
    leaseUntil: bigint('lease_until', { mode: 'number' }).notNull().default(0),
    /** When a driver last stepped it (ms): active batches are stepped oldest first (round-robin). */
    steppedAt: bigint('stepped_at', { mode: 'number' }).notNull().default(0),
    /** Creation order (lists page by it; many batches share a second). */
    seq: bigint('seq', { mode: 'number' }).notNull().generatedAlwaysAsIdentity(),
  },
  (t) => [
    index('batches_account_seq_idx').on(t.accountId, t.seq),
    index('batches_active_idx').on(t.status, t.steppedAt),
  ],
);

/**
 * One row per input line once validated: its request, its deterministic job id once fed (so a line
 * is submitted, run and billed once across crashes), and its output or error line once ended.
 */
export const batchLines = pgTable(
  'batch_lines',
  {
    batchId: text('batch_id').notNull(),
    line: integer('line').notNull(),
    customId: text('custom_id').notNull(),
    body: jsonb('body'),
    state: text('state', {
      enum: ['pending', 'submitted', 'completed', 'failed', 'expired', 'cancelled'],
    }).notNull(),
    jobId: text('job_id'),
    /** When it was fed (ms): a line fed with no job record after a while was lost in a crash. */
    submittedAt: bigint('submitted_at', { mode: 'number' }),
    /**
     * The output or error file line (OpenAI's format), once the line ended: `json`, kept as written
     * (OpenAI's key order, compact), and copied into the result file as it is.
     */
    result: json('result'),
  },
  (t) => [
    primaryKey({ columns: [t.batchId, t.line] }),
    index('batch_lines_state_idx').on(t.batchId, t.state, t.line),
  ],
);
