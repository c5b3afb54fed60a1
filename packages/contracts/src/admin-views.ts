import { z } from 'zod';

/**
 * The admin API's read views (`GET /admin/v1/pools`, `/spend`, `/keys`, `/balances`): the response
 * schemas the ingress documents and serializes with, and the console parses with.
 */

/** A µUSD amount as an exact integer string (JSON has no bigint). */
const Micros = z.string().regex(/^-?\d+$/);
/** A USD amount as a decimal string. */
const Usd = z.string().regex(/^-?\d+(\.\d+)?$/);

export const PoolView = z.object({
  id: z.string(),
  /** The pool's workers have published their models (they are running). */
  live: z.boolean(),
  /** Worker processes connected to the pool's queue. */
  workers: z.number().int(),
  /** Jobs waiting for a worker (the BullMQ queue and the fast lane). */
  queued: z.number().int(),
  /** Jobs waiting out a backoff before they may run. */
  delayed: z.number().int(),
  /** Provider calls running now. */
  in_flight: z.number().int(),
  /** How long the oldest waiting job has waited (ms), or null when none waits. */
  oldest_job_age_ms: z.number().int().nullable(),
  circuit: z.enum(['closed', 'open', 'half-open']),
  /** Failed jobs BullMQ keeps (a day at most). */
  failed_jobs: z.number().int(),
  /** Provider calls that failed in the last hour (settled usage events). */
  failures_last_hour: z.number().int(),
  recent_failures: z.array(
    z.object({
      job_id: z.string().nullable(),
      model: z.string().nullable(),
      reason: z.string().nullable(),
      failed_at: z.string().nullable(),
    }),
  ),
});
export type PoolView = z.infer<typeof PoolView>;
export const PoolList = z.object({ object: z.literal('list'), data: z.array(PoolView) });
export type PoolList = z.infer<typeof PoolList>;

export const SPEND_GROUPS = ['account', 'key', 'model', 'day'] as const;
export const SpendGroup = z.enum(SPEND_GROUPS);
export type SpendGroup = z.infer<typeof SpendGroup>;

export const SpendRow = z.object({
  /** UTC date YYYY-MM-DD. */
  day: z.string(),
  /** The account id, key id or provider/model (the day when grouped by day). */
  group: z.string(),
  /** The account's or key's name. */
  label: z.string().nullable(),
  /** Provider calls that produced tokens (retries and fallbacks each count), as `/v1/usage` counts them. */
  calls: z.number().int(),
  /** Requests with at least one such call, as `/v1/usage` counts them. */
  requests: z.number().int(),
  input_tokens: z.number().int(),
  output_tokens: z.number().int(),
  cost_usd: Usd,
  cost_micros: Micros,
  /**
   * Calls made for requests that had ended already (Redis lost the writes that ended them and the
   * gateway ran them again): charged to no one, what they cost the gateway at list price.
   */
  rerun_calls: z.number().int(),
  rerun_cost_usd: Usd,
  rerun_cost_micros: Micros,
});
export type SpendRow = z.infer<typeof SpendRow>;
export const SpendReport = z.object({
  object: z.literal('spend'),
  group: SpendGroup,
  days: z.number().int(),
  data: z.array(SpendRow),
});
export type SpendReport = z.infer<typeof SpendReport>;

export const ApiKeyView = z.object({
  object: z.literal('api_key'),
  id: z.string(),
  account_id: z.string(),
  account_name: z.string(),
  name: z.string(),
  /** The non-secret start of the key (the key itself is shown once, at creation). */
  prefix: z.string(),
  scopes: z.array(z.string()),
  /** The models the key may use, as given at creation (null: every model). */
  allowed_models: z.array(z.string()).nullable(),
  revoked: z.boolean(),
  revoked_at: z.string().nullable(),
  spend_limit_usd: Usd.nullable(),
  spent_usd: Usd,
  spent_micros: Micros,
  rpm_limit: z.number().int().nullable(),
  tpm_limit: z.number().int().nullable(),
  patience_ms: z.number().int().nullable(),
  created_at: z.string(),
});
export type ApiKeyView = z.infer<typeof ApiKeyView>;
export const ApiKeyList = z.object({ object: z.literal('list'), data: z.array(ApiKeyView) });
export type ApiKeyList = z.infer<typeof ApiKeyList>;

export const BalanceView = z.object({
  account_id: z.string(),
  name: z.string(),
  balance_usd: Usd,
  balance_micros: Micros,
  held_usd: Usd,
  held_micros: Micros,
  available_usd: Usd,
  available_micros: Micros,
});
export type BalanceView = z.infer<typeof BalanceView>;
export const BalanceList = z.object({ object: z.literal('list'), data: z.array(BalanceView) });
export type BalanceList = z.infer<typeof BalanceList>;

/** What `POST /admin/v1/keys` answers: the only time the key itself is shown. */
export const CreatedApiKey = z.object({ id: z.string(), key: z.string(), prefix: z.string() });
export type CreatedApiKey = z.infer<typeof CreatedApiKey>;

/** A batch of the Batch API with its progress, across tenants (`GET /admin/v1/batches`). */
export const BatchView = z.object({
  id: z.string(),
  account_id: z.string(),
  account_name: z.string().nullable(),
  endpoint: z.string(),
  status: z.string(),
  total: z.number().int(),
  completed: z.number().int(),
  failed: z.number().int(),
  /** Unix seconds. */
  created_at: z.number().int(),
  expires_at: z.number().int(),
  ended_at: z.number().int().nullable(),
});
export type BatchView = z.infer<typeof BatchView>;
export const BatchList = z.object({ object: z.literal('list'), data: z.array(BatchView) });
export type BatchList = z.infer<typeof BatchList>;
