import { type SQL, sql } from 'drizzle-orm';
import type { Db } from './client.ts';

export type UsageGroupBy = 'day' | 'model' | 'key';

export interface UsageTotals {
  /** Provider calls that produced tokens (retries and fallbacks each count). */
  calls: number;
  /** Distinct requests with at least one such call. */
  requests: number;
  inputTokens: number;
  cachedInputTokens: number;
  cacheWriteTokens: number;
  /** Of the cache writes, those with a 1-hour TTL. */
  cacheWrite1hTokens: number;
  outputTokens: number;
  reasoningTokens: number;
  costMicros: bigint;
}

export interface UsageRow extends UsageTotals {
  /** UTC date `YYYY-MM-DD`, when grouped by day. */
  day?: string;
  /** When grouped by model. */
  provider?: string;
  model?: string;
  /** When grouped by key. */
  keyId?: string;
}

type RawRow = {
  day?: string;
  provider?: string;
  model?: string;
  key_id?: string;
  calls: string;
  requests: string;
  input: string;
  cached: string;
  cache_write: string;
  cache_write_1h: string;
  output: string;
  reasoning: string;
  cost: string;
};

// A request's last event is written even when it made no call that produced tokens (a batch line
// that expired waiting, a call refused): it releases the request's hold, it is not a call. Calls
// and requests count what produced tokens, what the cost is the cost of: here and in the admin's
// spend report (admin-views.ts), so the two agree.
export const countedCalls = sql`count(*) FILTER (WHERE input_tokens + output_tokens > 0)`;
export const countedRequests = sql`count(DISTINCT request_id) FILTER (WHERE input_tokens + output_tokens > 0)`;
const aggregates = sql`${countedCalls}::text AS calls,
  ${countedRequests}::text AS requests,
  coalesce(sum(input_tokens), 0)::text AS input, coalesce(sum(cached_input_tokens), 0)::text AS cached,
  coalesce(sum(cache_write_tokens), 0)::text AS cache_write,
  coalesce(sum(cache_write_1h_tokens), 0)::text AS cache_write_1h, coalesce(sum(output_tokens), 0)::text AS output,
  coalesce(sum(reasoning_tokens), 0)::text AS reasoning, coalesce(sum(cost_micros), 0)::text AS cost`;

function totals(r: RawRow): UsageTotals {
  return {
    calls: Number(r.calls),
    requests: Number(r.requests),
    inputTokens: Number(r.input),
    cachedInputTokens: Number(r.cached),
    cacheWriteTokens: Number(r.cache_write),
    cacheWrite1hTokens: Number(r.cache_write_1h),
    outputTokens: Number(r.output),
    reasoningTokens: Number(r.reasoning),
    costMicros: BigInt(r.cost),
  };
}

/**
 * One account's settled usage in [from, to), grouped by any of day (UTC), model and key, plus the
 * totals. Always scoped by `accountId`: callers can never read another tenant's usage.
 */
export async function getUsage(
  db: Db,
  accountId: string,
  opts: { from?: Date; to?: Date; groupBy: UsageGroupBy[] },
): Promise<{ rows: UsageRow[]; totals: UsageTotals }> {
  const where: SQL[] = [sql`account_id = ${accountId}`];
  if (opts.from) where.push(sql`occurred_at >= ${opts.from.toISOString()}`);
  if (opts.to) where.push(sql`occurred_at < ${opts.to.toISOString()}`);
  const cond = sql.join(where, sql` AND `);
  const groupBy = [...new Set(opts.groupBy)];
  const cols: SQL[] = [];
  const keys: SQL[] = [];
  if (groupBy.includes('day')) {
    cols.push(sql`to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day`);
    keys.push(sql`1`);
  }
  if (groupBy.includes('model')) {
    cols.push(sql`provider, model`);
    keys.push(sql`provider, model`);
  }
  if (groupBy.includes('key')) {
    cols.push(sql`key_id`);
    keys.push(sql`key_id`);
  }
  const [total] = (await db.execute<RawRow>(sql`SELECT ${aggregates} FROM usage_events WHERE ${cond}`)).rows;
  let rows: UsageRow[] = [];
  if (cols.length > 0) {
    // Day is the first column when present, so `GROUP BY 1` names it without repeating the expression.
    const res = await db.execute<RawRow>(sql`
      SELECT ${sql.join(cols, sql`, `)}, ${aggregates} FROM usage_events WHERE ${cond}
      GROUP BY ${sql.join(keys, sql`, `)} ORDER BY ${sql.join(keys, sql`, `)}`);
    rows = res.rows.map((r) => ({
      ...(r.day !== undefined ? { day: r.day } : {}),
      ...(r.provider !== undefined ? { provider: r.provider, model: r.model } : {}),
      ...(r.key_id !== undefined ? { keyId: r.key_id } : {}),
      ...totals(r),
    }));
  }
  return { rows, totals: totals(total!) };
}
