import type { LocalPools } from './local-pools.ts';
import type { RedisClient } from '@faregate/queue/redis';
import type { Logger } from 'pino';
import type { Db } from '@faregate/db/client';
import type { FrameStore } from '@faregate/queue/frame-store';
import type { Keys } from '@faregate/queue/keys';
import type { LiveHub } from '@faregate/queue/live-hub';
import type { ProviderQueues } from '@faregate/queue/queues';
import type { FastLanes } from '@faregate/queue/fast-lane';
import type { Budget } from './budget.ts';
import type { IngressMetrics } from './metrics.ts';
import type { Tracing } from '@faregate/observability/tracing';
import type { Authenticator } from './plugins/auth.ts';
import type { IngressConfig } from './config.ts';
import type { ModelDirectory } from './routing/directory.ts';
import type { Router } from './routing/router.ts';
import type { BacklogGate } from './backlog-gate.ts';

/** Everything the ingress needs, built once in main.ts (or by a test) and passed down. */
export interface IngressDeps {
  config: IngressConfig;
  log: Logger;
  redis: RedisClient;
  keys: Keys;
  store: FrameStore;
  hub: LiveHub;
  queues: ProviderQueues;
  /** Pools' fast lanes: interactive requests go there when the pool's workers run it. */
  fastLanes?: FastLanes;
  /** Pools this process runs lane requests of itself (INGRESS_POOLS; main.ts starts them). */
  localPools?: Pick<LocalPools, 'run'>;
  db: Db;
  /** Tenant keys (cached lookups, revocation). */
  auth: Authenticator;
  budget: Budget;
  /** Load shedding per pool (MAX_POOL_BACKLOG). */
  backlogGate?: BacklogGate;
  directory: ModelDirectory;
  router: Router;
  /** Prometheus metrics (served on METRICS_PORT by main.ts). */
  metrics: IngressMetrics;
  /** Traces (OTLP), off unless configured (main.ts starts them). */
  tracing?: Tracing;
  /**
   * The bootstrap credit this start queued for billing (its idempotency key): `/readyz` waits until
   * billing has recorded its outcome, so the demo key is funded once the gateway says it is ready.
   */
  awaitedCredit?: string;
}
