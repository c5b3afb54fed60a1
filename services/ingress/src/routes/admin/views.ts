import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { microsToUsd } from '@faregate/catalog/money';
import { ApiKeyList, BatchList, PoolList, SpendGroup, SpendReport } from '@faregate/contracts/admin-views';
import { circuitState } from '@faregate/contracts/pool-control';
import { getSpend, listApiKeys, listBatches, recentFailures } from '@faregate/db/admin-views';
import type { IngressDeps } from '../../deps.ts';
import { defaultAuth } from '../../plugins/auth.ts';

/** How far back "recent failures" of a provider reach. */
const FAILURE_WINDOW_MS = 60 * 60 * 1000;
/** How many of a pool's failed BullMQ jobs are shown (newest first). */
const FAILED_SHOWN = 5;
/** How many prioritized jobs are scanned for the oldest (batch lines wait there at a lower priority). */
const PRIORITIZED_SCANNED = 200;

const SpendQuery = z.strictObject({
  group: SpendGroup.default('day'),
  days: z.coerce.number().int().min(1).max(366).default(30),
});

const BatchesQuery = z.strictObject({
  limit: z.coerce.number().int().min(1).max(1000).default(100),
});

const KeysQuery = z.strictObject({
  account_id: z.string().min(1).max(256).optional(),
  limit: z.coerce.number().int().min(1).max(1000).default(200),
});

/** A pool's queue as operators look at it: the BullMQ queue and the fast lane together. */
async function poolView(deps: IngressDeps, pool: string, now: number, failures: Map<string, number>) {
  const q = deps.queues.get(pool);
  const { redis, keys } = deps;
  const [counts, oldestWaiting, prioritized, workers, laneQueued, laneRunning, failed, circuit, live] =
    await Promise.all([
      q.getJobCounts('wait', 'prioritized', 'delayed', 'active', 'failed'),
      // BullMQ's wait list, oldest first.
      q.getJobs(['wait'], 0, 0, true),
      q.getJobs(['prioritized'], 0, PRIORITIZED_SCANNED - 1, true),
      q.getWorkersCount(),
      redis.zcard(keys.fast(pool, 'due')),
      redis.zcard(keys.fast(pool, 'run')),
      q.getJobs(['failed'], 0, FAILED_SHOWN - 1, false),
      redis.hgetall(keys.circuit(pool)),
      redis.exists(keys.models(pool)),
    ]);
  const waiting = [...oldestWaiting, ...prioritized].filter((j) => j !== undefined);
  const oldest = waiting.reduce<number | null>(
    (min, j) => (min === null || j.timestamp < min ? j.timestamp : min),
    null,
  );
  const n = (k: string) => counts[k] ?? 0;
  return {
    id: pool,
    live: live === 1,
    workers,
    queued: n('wait') + n('prioritized') + laneQueued,
    delayed: n('delayed'),
    in_flight: n('active') + laneRunning,
    oldest_job_age_ms: oldest === null ? null : Math.max(0, now - oldest),
    circuit: circuitState(circuit),
    failed_jobs: n('failed'),
    failures_last_hour: failures.get(pool) ?? 0,
    recent_failures: failed
      .filter((j) => j !== undefined)
      .map((j) => ({
        job_id: j.id ?? null,
        model: j.data?.requestedModel ?? null,
        reason: j.failedReason?.slice(0, 300) ?? null,
        failed_at: j.finishedOn ? new Date(j.finishedOn).toISOString() : null,
      })),
  };
}

/**
 * The admin API's read views for the console (and anyone with the admin token): pools with their
 * queue, spend across tenants grouped in SQL, the key listing (never a key's secret or hash), and the
 * Batch API's batches with their progress.
 */
export async function adminViewRoutes(app: FastifyInstance, deps: IngressDeps): Promise<void> {
  defaultAuth(app, 'admin');
  const r = app.withTypeProvider<ZodTypeProvider>();

  r.get('/admin/v1/pools', { schema: { response: { 200: PoolList } } }, async () => {
    const now = Date.now();
    const pools = new Set([
      ...(await deps.redis.smembers(deps.keys.pools)),
      ...deps.config.EXPECTED_POOLS,
      ...deps.directory.providers,
    ]);
    const failures = await recentFailures(deps.db, new Date(now - FAILURE_WINDOW_MS));
    const data = await Promise.all([...pools].sort().map((p) => poolView(deps, p, now, failures)));
    return { object: 'list' as const, data };
  });

  r.get(
    '/admin/v1/spend',
    { schema: { querystring: SpendQuery, response: { 200: SpendReport } } },
    async (req) => {
      const { group, days } = req.query;
      const rows = await getSpend(deps.db, { group, days });
      return {
        object: 'spend' as const,
        group,
        days,
        data: rows.map((row) => ({
          day: row.day,
          group: row.group,
          label: row.label,
          calls: row.calls,
          requests: row.requests,
          input_tokens: row.inputTokens,
          output_tokens: row.outputTokens,
          cost_usd: microsToUsd(row.costMicros),
          cost_micros: row.costMicros.toString(),
          rerun_calls: row.rerunCalls,
          rerun_cost_usd: microsToUsd(row.rerunCostMicros),
          rerun_cost_micros: row.rerunCostMicros.toString(),
        })),
      };
    },
  );

  r.get(
    '/admin/v1/keys',
    { schema: { querystring: KeysQuery, response: { 200: ApiKeyList } } },
    async (req) => {
      const rows = await listApiKeys(deps.db, { accountId: req.query.account_id, limit: req.query.limit });
      return {
        object: 'list' as const,
        data: rows.map((k) => ({
          object: 'api_key' as const,
          id: k.id,
          account_id: k.accountId,
          account_name: k.accountName,
          name: k.name,
          prefix: k.prefix,
          scopes: k.scopes,
          allowed_models: k.allowedModels,
          revoked: k.revoked,
          revoked_at: k.revokedAt?.toISOString() ?? null,
          spend_limit_usd: k.spendLimitMicros === null ? null : microsToUsd(k.spendLimitMicros),
          spent_usd: microsToUsd(k.spentMicros),
          spent_micros: k.spentMicros.toString(),
          rpm_limit: k.rpmLimit,
          tpm_limit: k.tpmLimit,
          patience_ms: k.patienceMs,
          created_at: k.createdAt.toISOString(),
        })),
      };
    },
  );

  r.get(
    '/admin/v1/batches',
    { schema: { querystring: BatchesQuery, response: { 200: BatchList } } },
    async (req) => {
      const rows = await listBatches(deps.db, { limit: req.query.limit });
      return {
        object: 'list' as const,
        data: rows.map((b) => ({
          id: b.id,
          account_id: b.accountId,
          account_name: b.accountName,
          endpoint: b.endpoint,
          status: b.status,
          total: b.total,
          completed: b.completed,
          failed: b.failed,
          created_at: b.createdAt,
          expires_at: b.expiresAt,
          ended_at: b.endedAt,
        })),
      };
    },
  );
}
