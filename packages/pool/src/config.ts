import { z } from 'zod';
import { envBool, envRedisClusterNodes, parseEnv } from '@faregate/contracts/env';
import { sharedTimings } from '@faregate/contracts/timings';

const int = (def: number) => z.coerce.number().int().positive().default(def);

export const WorkerConfig = z.object({
  WORKER_PROVIDER: z.string().regex(/^[a-z0-9-]+$/, 'a provider pool name like "openai"'),
  REDIS_URL: z.string().default('redis://127.0.0.1:6379'),
  REDIS_PREFIX: z.string().default('fg'),
  /** Redis Cluster seed nodes (`host:port,…`); unset: the one server at REDIS_URL. */
  REDIS_CLUSTER_NODES: envRedisClusterNodes(),
  /**
   * Jobs in flight per process. A provider call lasts 1-30 s, so this caps a process at
   * WORKER_CONCURRENCY / call-seconds calls per second (64 capped it at 65 req/s against a 1 s
   * upstream: bench/gateway/slow-upstream.ts).
   */
  WORKER_CONCURRENCY: int(256),
  /** Attempts per provider before falling back to the next candidate. */
  WORKER_ATTEMPTS: int(3),
  /** STREAM_TTL_SECONDS, SYNC_TTL_SECONDS, FAST_LANE_GRACE_MS: the ingress reads the same variables. */
  ...sharedTimings,
  DISCOVERY_INTERVAL_MS: int(60_000),
  /** How often a worker rewrites its pool's record (its liveness, which lapses after three of these). */
  LIVENESS_INTERVAL_MS: int(5_000),
  /** Routing/limits file (see faregate.config.json); env limits below override it. */
  FAREGATE_CONFIG: z.string().optional(),
  /** Requests per window (default: per minute) across every process of the pool, per provider key. */
  WORKER_RPM: z.coerce.number().int().positive().optional(),
  /** Tokens (input + output) per window across the pool, per provider key. */
  WORKER_TPM: z.coerce.number().int().positive().optional(),
  /** Requests in flight across every process of the pool, lane runs and queued runs (limits/in-flight.ts). */
  WORKER_MAX_IN_FLIGHT: z.coerce.number().int().positive().optional(),
  /** Length of the rate-limit window (RPM/TPM are per this window). */
  RATE_WINDOW_MS: int(60_000),
  /**
   * How long a process admits locally from a lease of the RPM window (limiter.ts): one Redis round
   * trip takes what the limit allows in this long (at most 32 requests), the rest of the lease is
   * admitted without one; the window is padded by it. 0: one round trip per request. Unset: 250 ms
   * where that costs the limit under 1 % (thousands a minute), else 0 (limiter.ts `leaseMsOf`). On
   * the loaded 2-core machine a 250 ms lease on a small limit (300 per 10 s) reached 0.89 of L where
   * 0 reached 1.00 (README).
   */
  RATE_LEASE_MS: z.coerce.number().int().nonnegative().optional(),
  /** Guard added to the window against send → provider jitter (default: 2 % of the window, at least 200 ms). */
  RATE_GUARD_MS: z.coerce.number().int().nonnegative().optional(),
  /**
   * An interactive request (one with a patience, see JobData.patienceMs) waits out a provider's 429
   * at most this many times before it falls back or fails: at most 1 + this many upstream calls
   * per 429 the caller sees.
   */
  RATE_LIMIT_RETRIES: z.coerce.number().int().nonnegative().default(2),
  /** Times a job may be started (rate-limit waits included) before it gives up on this provider. */
  WORKER_MAX_STARTS: int(50),
  /** How often limits are re-read from Redis (changed by the admin API without a restart). */
  LIMITS_REFRESH_MS: int(2_000),
  METRICS_PORT: z.coerce.number().int().nonnegative().default(9092),
  SHUTDOWN_TIMEOUT_MS: int(25_000),
  /** Job lock; renewed every half. A killed process's job is re-run after the lock lapses. */
  WORKER_LOCK_MS: int(30_000),
  /** How often stalled jobs (locks lapsed) are looked for. */
  WORKER_STALLED_INTERVAL_MS: int(15_000),
  /**
   * Run the pool's fast lane (packages/queue/src/fast-lane.ts): interactive requests reach an idle
   * worker with the message that wakes it. Lane jobs are admitted like queued ones (RPM/TPM, learned
   * pauses, and max-in-flight: limits/in-flight.ts).
   */
  FAST_LANE: envBool(true),
  LOG_LEVEL: z.string().default('info'),
});
export type WorkerConfig = z.infer<typeof WorkerConfig>;

export function loadConfig(env: Record<string, string | undefined>): WorkerConfig {
  return parseEnv(WorkerConfig, env, 'worker');
}
