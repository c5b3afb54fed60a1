import { hostname } from 'node:os';
import { z } from 'zod';
import { envRedisClusterNodes, parseEnv } from '@faregate/contracts/env';

const int = (def: number, min = 0) => z.coerce.number().int().min(min).default(def);

export const BillingConfig = z.object({
  DATABASE_URL: z.string().min(1),
  REDIS_URL: z.string().min(1),
  REDIS_PREFIX: z.string().min(1).default('fg'),
  /** Redis Cluster seed nodes (`host:port,…`); unset: the one server at REDIS_URL. */
  REDIS_CLUSTER_NODES: envRedisClusterNodes(),
  /** Routing file with price overrides (the same file the ingress reads). */
  FAREGATE_CONFIG: z.string().optional(),
  /** Most events settled per Postgres transaction. */
  BILLING_BATCH_SIZE: int(500, 1),
  /** How long to keep collecting a batch once its first event arrived. */
  BILLING_BATCH_MS: int(50),
  /** Consumer name in the group; stable across restarts so a replica resumes its own pending list. */
  BILLING_CONSUMER: z.string().min(1).default(hostname()),
  BILLING_CLAIM_IDLE_MS: int(30_000, 1_000),
  BILLING_BACKOFF_MAX_MS: int(10_000, 100),
  BILLING_HOLD_SWEEP_MS: int(30_000, 1_000),
  METRICS_PORT: int(9091),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
});
export type BillingConfig = z.infer<typeof BillingConfig>;

/** Parses the environment once (composition root only). Throws with every problem listed. */
export function loadConfig(env: Record<string, string | undefined>): BillingConfig {
  return parseEnv(BillingConfig, env, 'billing');
}
