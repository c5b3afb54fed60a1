import { type SQL, sql } from 'drizzle-orm';
import type { SpendGroup } from '@faregate/contracts/admin-views';
import type { Db } from './client.ts';
import { countedCalls, countedRequests } from './usage.ts';

export interface SpendRow {
  /** UTC date `YYYY-MM-DD`. */
  day: string;
  /** The account id, key id or `provider/model`; the day itself when grouped by day. */
  group: string;
  /** The account's or key's name, when grouped by account or key. */
  label: string | null;
  /** Provider calls that produced tokens, and the requests they served (as `/v1/usage` counts them). */
  calls: number;
  requests: number;
  inputTokens: number;
  outputTokens: number;
  costMicros: bigint;
  /**
   * Calls made for requests that had ended already (Redis lost the writes that ended them), charged
   * to no one (`rerun_calls`): how many, and what they cost the gateway at list price.
   */
  rerunCalls: number;
  rerunCostMicros: bigint;
}

const GROUP_COLUMN: Record<SpendGroup, SQL> = {
  account: sql`u.account_id`,
  key: sql`u.key_id`,
  model: sql`u.provider || '/' || u.model`,
  day: sql`to_char(u.occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')`,
};

const GROUP_LABEL: Record<SpendGroup, SQL> = {
  account: sql`(SELECT a.name FROM accounts a WHERE a.id = u.account_id)`,
  key: sql`(SELECT k.name FROM api_keys k WHERE k.id = u.key_id)`,
  model: sql`NULL::text`,
  day: sql`NULL::text`,
};

/**
 * Settled spend across every tenant (the admin's view; a tenant sees only its own, `getUsage`) of the last `days` UTC days (today included), per day and per `group`, summed in
 * Postgres from usage_events (what settlement recorded, one row per provider call), next to the
 * re-run calls of the same day and group (`rerun_calls`, charged to no one). Rows are ordered by day,
 * then by cost (largest first).
 */
export async function getSpend(
  db: Db,
  opts: { group: SpendGroup; days: number; now?: Date },
): Promise<SpendRow[]> {
  const now = opts.now ?? new Date();
  const from = new Date(
    Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate() - (opts.days - 1)),
  );
  const col = GROUP_COLUMN[opts.group];
  const day = GROUP_COLUMN.day;
  const r = await db.execute<{
    day: string;
    grp: string;
    label: string | null;
    calls: string;
    requests: string;
    input: string;
    output: string;
    cost: string;
    rerun_calls: string;
    rerun_cost: string;
  }>(sql`
    WITH s AS (
      SELECT ${day} AS day, ${col} AS grp, min(${GROUP_LABEL[opts.group]}) AS label,
             ${countedCalls} AS calls, ${countedRequests} AS requests,
             coalesce(sum(u.input_tokens), 0) AS input, coalesce(sum(u.output_tokens), 0) AS output,
             coalesce(sum(u.cost_micros), 0) AS cost
        FROM usage_events u
       WHERE u.occurred_at >= ${from.toISOString()}
       GROUP BY 1, 2),
    -- The same grouping over the re-run calls (rerun_calls has the usage events' columns).
    r AS (
      SELECT ${day} AS day, ${col} AS grp, min(${GROUP_LABEL[opts.group]}) AS label,
             count(*) AS calls, coalesce(sum(u.cost_micros), 0) AS cost
        FROM rerun_calls u
       WHERE u.occurred_at >= ${from.toISOString()}
       GROUP BY 1, 2)
    SELECT coalesce(s.day, r.day) AS day, coalesce(s.grp, r.grp) AS grp,
           coalesce(s.label, r.label) AS label, coalesce(s.calls, 0)::text AS calls,
           coalesce(s.requests, 0)::text AS requests, coalesce(s.input, 0)::text AS input,
           coalesce(s.output, 0)::text AS output, coalesce(s.cost, 0)::text AS cost,
           coalesce(r.calls, 0)::text AS rerun_calls, coalesce(r.cost, 0)::text AS rerun_cost
      FROM s FULL JOIN r ON r.day = s.day AND r.grp = s.grp
     ORDER BY 1, coalesce(s.cost, 0) DESC, 2`);
  return r.rows.map((row) => ({
    day: row.day,
    group: row.grp,
    label: row.label,
    calls: Number(row.calls),
    requests: Number(row.requests),
    inputTokens: Number(row.input),
    outputTokens: Number(row.output),
    costMicros: BigInt(row.cost),
    rerunCalls: Number(row.rerun_calls),
    rerunCostMicros: BigInt(row.rerun_cost),
  }));
}

export interface ApiKeyListing {
  id: string;
  accountId: string;
  accountName: string;
  name: string;
  prefix: string;
  scopes: string[];
  allowedModels: string[] | null;
  revoked: boolean;
  revokedAt: Date | null;
  spendLimitMicros: bigint | null;
  spentMicros: bigint;
  rpmLimit: number | null;
  tpmLimit: number | null;
  patienceMs: number | null;
  createdAt: Date;
}

/** Every tenant key (never its hash), newest first, optionally one account's; at most `limit`. */
export async function listApiKeys(
  db: Db,
  opts: { accountId?: string; limit: number },
): Promise<ApiKeyListing[]> {
  const where = opts.accountId ? sql`WHERE k.account_id = ${opts.accountId}` : sql``;
  const r = await db.execute<{
    id: string;
    account_id: string;
    account_name: string;
    name: string;
    prefix: string;
    scopes: string[];
    allowed_models: string[] | null;
    revoked: boolean;
    revoked_at: string | null;
    spend_limit: string | null;
    spent: string;
    rpm_limit: number | null;
    tpm_limit: number | null;
    patience_ms: number | null;
    created_at: string;
  }>(sql`
    SELECT k.id, k.account_id, a.name AS account_name, k.name, k.prefix, k.scopes, k.allowed_models, k.revoked,
           (extract(epoch FROM k.revoked_at) * 1000)::bigint::text AS revoked_at, k.spend_limit_micros::text AS spend_limit,
           k.spent_micros::text AS spent, k.rpm_limit, k.tpm_limit, k.patience_ms,
           (extract(epoch FROM k.created_at) * 1000)::bigint::text AS created_at
      FROM api_keys k JOIN accounts a ON a.id = k.account_id ${where}
     ORDER BY k.created_at DESC, k.id
     LIMIT ${opts.limit}`);
  return r.rows.map((row) => ({
    id: row.id,
    accountId: row.account_id,
    accountName: row.account_name,
    name: row.name,
    prefix: row.prefix,
    scopes: row.scopes,
    allowedModels: row.allowed_models,
    revoked: row.revoked,
    revokedAt: row.revoked_at ? new Date(Number(row.revoked_at)) : null,
    spendLimitMicros: row.spend_limit === null ? null : BigInt(row.spend_limit),
    spentMicros: BigInt(row.spent),
    rpmLimit: row.rpm_limit,
    tpmLimit: row.tpm_limit,
    patienceMs: row.patience_ms,
    createdAt: new Date(Number(row.created_at)),
  }));
}

/** Failed provider calls per provider since `since` (usage events whose outcome is `failed`). */
export async function recentFailures(db: Db, since: Date): Promise<Map<string, number>> {
  const r = await db.execute<{ provider: string; n: string }>(sql`
    SELECT provider, count(*)::text AS n FROM usage_events
     WHERE outcome = 'failed' AND occurred_at >= ${since.toISOString()}
     GROUP BY provider`);
  return new Map(r.rows.map((row) => [row.provider, Number(row.n)]));
}

export interface BatchListing {
  id: string;
  accountId: string;
  accountName: string | null;
  endpoint: string;
  status: string;
  total: number;
  completed: number;
  failed: number;
  /** Unix seconds, as the Batch API shows them. */
  createdAt: number;
  expiresAt: number;
  /** When it reached its final status (completed, failed, expired or cancelled), Unix seconds. */
  endedAt: number | null;
}

/** Batches of every tenant (the Batch API's), newest first, at most `limit`. */
export async function listBatches(db: Db, opts: { limit: number }): Promise<BatchListing[]> {
  const r = await db.execute<{
    id: string;
    account_id: string;
    account_name: string | null;
    endpoint: string;
    status: string;
    total: number;
    completed: number;
    failed: number;
    created_at: string;
    expires_at: string;
    ended_at: string | null;
  }>(sql`
    SELECT b.id, b.account_id, a.name AS account_name, b.endpoint, b.status, b.total, b.completed,
           b.failed, b.created_at::text AS created_at, b.expires_at::text AS expires_at,
           coalesce(b.completed_at, b.failed_at, b.expired_at, b.cancelled_at)::text AS ended_at
      FROM batches b LEFT JOIN accounts a ON a.id = b.account_id
     ORDER BY b.created_at DESC, b.id DESC
     LIMIT ${opts.limit}`);
  return r.rows.map((row) => ({
    id: row.id,
    accountId: row.account_id,
    accountName: row.account_name,
    endpoint: row.endpoint,
    status: row.status,
    total: row.total,
    completed: row.completed,
    failed: row.failed,
    createdAt: Number(row.created_at),
    expiresAt: Number(row.expires_at),
    endedAt: row.ended_at === null ? null : Number(row.ended_at),
  }));
}
