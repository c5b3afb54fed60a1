import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Keys } from '@switchyard/queue/keys';
import type { FrameStore } from '@switchyard/queue/frame-store';
import type { ProviderQueues } from '@switchyard/queue/queues';
import type { ProviderAdapter, ProviderConfig } from '@switchyard/providers/types';
import type { callProvider } from '@switchyard/providers/call';
import type { WorkerConfig } from './config.ts';
import type { CancelRegistry } from './cancel.ts';
import type { WorkerMetrics } from './metrics.ts';

export interface PoolProvider {
  config: ProviderConfig;
  adapter: ProviderAdapter;
  /** Rotates across the configured keys. */
  nextKey(): string | undefined;
}

/** Everything the worker needs, built once in main.ts and passed down. */
export interface WorkerDeps {
  config: WorkerConfig;
  log: Logger;
  redis: Redis;
  keys: Keys;
  store: FrameStore;
  queues: ProviderQueues;
  provider: PoolProvider;
  call: typeof callProvider;
  cancels: CancelRegistry;
  metrics: WorkerMetrics;
  /** Learns from rate-limit headers (worker pools issue). */
  limits?: { observe(headers: Headers): void };
}

export function rotatingKeys(keys: string[]): () => string | undefined {
  let i = 0;
  return () => (keys.length === 0 ? undefined : keys[i++ % keys.length]);
}
