import { z } from 'zod';
import { envBool, envRedisClusterNodes, parseEnv } from '@faregate/contracts/env';
import { withRule } from '@faregate/contracts/refine';
import { sharedTimings } from '@faregate/contracts/timings';

const int = (def: number) => z.coerce.number().int().positive().default(def);
const bool = envBool;
/** An optional setting; set but empty (`S3_ENDPOINT=` in a compose file) counts as unset. */
const optional = () =>
  z
    .string()
    .optional()
    .transform((v) => v || undefined);

/** A comma-separated list of pool names ('' = none). */
const poolList = () =>
  z
    .string()
    .default('')
    .transform((s) =>
      s
        .split(',')
        .map((p) => p.trim())
        .filter((p) => p.length > 0),
    );

export const IngressConfig = z.object({
  PORT: z.coerce.number().int().nonnegative().default(8080),
  HOST: z.string().default('0.0.0.0'),
  REDIS_URL: z.string().default('redis://127.0.0.1:6379'),
  REDIS_PREFIX: z.string().default('fg'),
  /** Redis Cluster seed nodes (`host:port,…`); unset: the one server at REDIS_URL. */
  REDIS_CLUSTER_NODES: envRedisClusterNodes(),
  DATABASE_URL: z.string().default('postgres://postgres@127.0.0.1:5432/faregate'),
  FAREGATE_BOOTSTRAP_KEY: z.string().min(8).optional(),
  FAREGATE_BOOTSTRAP_CREDIT_USD: z
    .string()
    .regex(/^\d+(\.\d{1,6})?$/)
    .default('10'),
  FAREGATE_ADMIN_TOKEN: z.string().min(16).optional(),
  /** Largest request body accepted (bytes). Prompts with images can be large. */
  BODY_LIMIT_BYTES: int(8 * 1024 * 1024),
  /** How long a request may take in total before it fails (queueing, retries, fallbacks). */
  REQUEST_TIMEOUT_MS: int(600_000),
  /**
   * How long a request may take to arrive, head and body (Node's own default, which Fastify turns
   * off): a body trickled in a byte at a time cannot hold a connection for good. Raise it to take
   * large file uploads over slow links.
   */
  REQUEST_RECEIVE_TIMEOUT_MS: int(300_000),
  /** STREAM_TTL_SECONDS, SYNC_TTL_SECONDS, FAST_LANE_GRACE_MS: the workers read the same variables. */
  ...sharedTimings,
  /** Stop generation (and bill what was generated) when an HTTP caller disconnects. */
  CANCEL_ON_DISCONNECT: bool(true),
  /**
   * Provider calls that produce tokens one request's budget hold covers: the ingress holds this many
   * times the most one call may cost, and the worker makes no further call once this many have
   * produced tokens (a retry or fallback after a stream broke midway bills again). 1: no such retry.
   */
  HOLD_CALLS: int(2),
  /**
   * How long a caller waiting on its answer (HTTP, SSE, WebSocket) waits out a rate-limited provider
   * (a 429 or an overload with retry-after) before a fallback or the 429 with its retry-after; per
   * request `x-faregate-patience-ms`. Async jobs wait as long as their deadline allows.
   */
  RATE_LIMIT_PATIENCE_MS: z.coerce.number().int().nonnegative().default(5_000),
  /**
   * Load shedding: a request whose caller waits on the answer is refused (503 `overloaded`, retry-after)
   * while its pool has this many requests queued ahead of it (`PoolBacklog.ahead`: batch lines and
   * running work do not count; 0: no bound). Async jobs still queue.
   */
  MAX_POOL_BACKLOG: z.coerce.number().int().nonnegative().default(1_000),
  /** Accept models that have no price (billed at zero). Off: such models are refused. */
  ALLOW_UNPRICED_MODELS: bool(false),
  /** Comma-separated Origins allowed to open the WebSocket (empty: any Origin with a valid key). */
  WS_ALLOWED_ORIGINS: z.string().default(''),
  WS_MAX_MESSAGE_BYTES: int(1024 * 1024),
  /** Routing file: fallback chains, aliases, price overrides (see faregate.config.json). */
  FAREGATE_CONFIG: z.string().optional(),
  /**
   * Budget leases (services/ingress/src/budget.ts): a lease reserves budget for this many requests
   * at once (1: every request holds its own amount in Postgres), at most BUDGET_LEASE_MAX_USD unless
   * that is fewer than BUDGET_LEASE_MIN_REQUESTS requests, is used for at most BUDGET_LEASE_TTL_MS,
   * and its rest is given back after BUDGET_LEASE_IDLE_MS idle.
   */
  BUDGET_LEASE_REQUESTS: int(64),
  BUDGET_LEASE_MIN_REQUESTS: int(16),
  BUDGET_LEASE_MAX_USD: z
    .string()
    .regex(/^\d+(\.\d{1,6})?$/)
    .default('1'),
  BUDGET_LEASE_TTL_MS: int(30_000),
  BUDGET_LEASE_IDLE_MS: int(2_000),
  /** How long the response of a request sent with an Idempotency-Key is kept for its retries. */
  IDEMPOTENCY_TTL_SECONDS: int(86_400),
  /** Files API: largest upload (bytes) and most lines of a batch input file (OpenAI's limits). */
  FILE_MAX_BYTES: int(200 * 1024 * 1024),
  FILE_MAX_LINES: int(50_000),
  /**
   * Where file bytes live: `postgres` (default: the `file_chunks` table) or `s3`, an S3-compatible
   * bucket (S3_BUCKET, under S3_PREFIX; S3_ENDPOINT for a server other than AWS, which usually
   * needs S3_FORCE_PATH_STYLE). Credentials: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY
   * (/ AWS_SESSION_TOKEN) when set, otherwise the AWS SDK's default chain (profile, IRSA, role).
   */
  FILES_STORAGE: z.enum(['postgres', 's3']).default('postgres'),
  /** How often each ingress removes expired files, uploads cut short and bytes left without a record (0: never). */
  FILES_SWEEP_MS: z.coerce.number().int().nonnegative().default(60_000),
  S3_BUCKET: optional(),
  S3_PREFIX: z.string().default('files/'),
  S3_REGION: optional(),
  AWS_REGION: optional(),
  S3_ENDPOINT: optional().pipe(z.url().optional()),
  S3_FORCE_PATH_STYLE: bool(false),
  AWS_ACCESS_KEY_ID: optional(),
  AWS_SECRET_ACCESS_KEY: optional(),
  AWS_SESSION_TOKEN: optional(),
  /**
   * Batches: how long `completion_window` '24h' lasts (tests shorten it), lines of one batch queued
   * or running at once, how often a driver steps the active batches, and its lease on a batch.
   */
  BATCH_WINDOW_SECONDS: int(86_400),
  BATCH_MAX_IN_FLIGHT: int(256),
  /**
   * Lines of one batch in flight while interactive work was seen on the pools in the last 2 s
   * (requests waiting or running on a pool's fast lane, unprioritized jobs waiting): batches then
   * leave the CPU and the pools to interactive traffic. 0 pauses batches while interactive work runs.
   */
  BATCH_INTERACTIVE_IN_FLIGHT: int(16),
  BATCH_TICK_MS: int(100),
  BATCH_LEASE_MS: int(5_000),
  /** Progress events kept per batch for WebSocket resumes (approximate; a reader further behind gets a gap). */
  BATCH_PROGRESS_MAXLEN: int(10_000),
  /**
   * Test only, off (0) by default: the ingress exits (code 86) when its batch driver is about to
   * queue its n-th line, after the line was fed and its job recorded (the crash window a driver
   * taking the batch over recovers).
   */
  BATCH_TEST_EXIT_BEFORE_QUEUE: z.coerce.number().int().nonnegative().default(0),
  /**
   * Comma-separated provider pools this deployment runs (`openai,anthropic`). `/readyz` answers 200
   * only once each has registered, and a request for one that has not (or has lost every worker)
   * gets 503 with `retry-after` instead of 404. Empty: no pool is waited for.
   */
  EXPECTED_POOLS: poolList(),
  /**
   * Pools this process also runs interactive requests of, in process (local-pools.ts): a request
   * the fast lane would carry to a worker is run here when a local slot is free, with the pool's
   * limits, pauses, circuit and crash billing (its run is recorded on the lane under this process's
   * lease; the pool's workers re-run it if this process dies). The pools' workers must run too:
   * they take what needs the queue (retries, waits, async jobs, batches). `pnpm start` sets it to
   * every pool it starts. Empty: none (every request goes through Redis to a worker).
   */
  INGRESS_POOLS: poolList(),
  /**
   * Requests each hosted pool runs here at once; past that they go to the pool's workers through the
   * lane, as without INGRESS_POOLS.
   */
  INGRESS_POOL_SLOTS: z.coerce.number().int().positive().default(255),
  /** How often the model directory re-reads what the worker pools published. */
  DIRECTORY_REFRESH_MS: int(5000),
  /** Prometheus `/metrics` (and `/healthz`) on a port of their own, off the public one; 0: off. */
  METRICS_PORT: z.coerce.number().int().nonnegative().default(9090),
  LOG_LEVEL: z.string().default('info'),
});
export type IngressConfig = z.infer<typeof IngressConfig>;

/** Settings that only make sense together. */
const Checked = withRule(IngressConfig, (c, ctx) => {
  if (c.FILES_STORAGE === 's3' && !c.S3_BUCKET)
    ctx.addIssue({ code: 'custom', path: ['S3_BUCKET'], message: 'required when FILES_STORAGE=s3' });
  if (!c.AWS_ACCESS_KEY_ID !== !c.AWS_SECRET_ACCESS_KEY)
    ctx.addIssue({
      code: 'custom',
      path: ['AWS_SECRET_ACCESS_KEY'],
      message: 'AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are set together',
    });
});

export function loadConfig(env: Record<string, string | undefined>): IngressConfig {
  return parseEnv(Checked, env, 'ingress');
}

/**
 * The longest a job may run: an interactive request gets REQUEST_TIMEOUT_MS; a batch line, time for
 * every call its budget hold covers (HOLD_CALLS) to run a whole request timeout, so a call that
 * hangs for all of one leaves room to retry or fall back (openai-batches/driver.ts). A budget lease
 * outlives the longest job it may admit.
 */
export const longestJobMs = (c: Pick<IngressConfig, 'HOLD_CALLS' | 'REQUEST_TIMEOUT_MS'>): number =>
  Math.max(1, c.HOLD_CALLS) * c.REQUEST_TIMEOUT_MS;
