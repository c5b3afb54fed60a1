import type { RedisClient } from '@faregate/queue/redis';
import type { PriceTable } from '@faregate/catalog/prices';
import type { Tracing } from '@faregate/observability/tracing';
import type { Logger } from 'pino';
import type { Keys } from '@faregate/queue/keys';
import type { FrameStore } from '@faregate/queue/frame-store';
import type { ProviderQueues } from '@faregate/queue/queues';
import type { ProviderAdapter, ProviderConfig } from '@faregate/providers/types';
import type { callEmbeddings, callProvider } from '@faregate/providers/call';
import type { WorkerConfig } from './config.ts';
import type { CancelRegistry } from './cancel.ts';
import type { WorkerMetrics } from './metrics.ts';
import type { Queue } from 'bullmq';
import type { JobData } from '@faregate/contracts/jobs';
import type { CircuitBreaker } from './limits/circuit.ts';
import type { PoolLimiter } from './limits/limiter.ts';

export interface PoolProvider {
  config: ProviderConfig;
  adapter: ProviderAdapter;
  /** The provider key with this index (the limiter picks the index). */
  key(index: number): string | undefined;
}

/** Limits in force now (file/env, overridden at run time through Redis by the admin API). */
export interface EffectiveLimits {
  rpm?: number;
  tpm?: number;
  maxInFlight?: number;
  attempts: number;
}

/** Everything a pool needs, built once per process by createPoolRuntime (runtime.ts) and passed down. */
export interface WorkerDeps {
  config: WorkerConfig;
  log: Logger;
  redis: RedisClient;
  keys: Keys;
  store: FrameStore;
  queues: ProviderQueues;
  provider: PoolProvider;
  call: typeof callProvider;
  /** The embeddings call (same exchange as `call`), injected likewise. */
  embed: typeof callEmbeddings;
  cancels: CancelRegistry;
  metrics: WorkerMetrics;
  /** This pool's BullMQ queue (pool-wide pauses). */
  queue: Queue<JobData>;
  limiter: PoolLimiter;
  circuit: CircuitBreaker;
  limits: EffectiveLimits;
  /**
   * The deployment's prices (the catalog with the routing file's overrides: what the ingress and
   * billing sync into Postgres), for the cost an answer reports.
   */
  prices: PriceTable;
  /** Traces (OTLP), off unless configured: an attempt's spans join its request's trace. */
  tracing?: Tracing;
}
