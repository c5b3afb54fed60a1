import type { Redis } from 'ioredis';
import { pino } from 'pino';
import { PriceTable } from '@faregate/catalog/prices';
import { callEmbeddings, type callProvider } from '@faregate/providers/call';
import { adapterForConfig, providersFromEnv } from '@faregate/providers/registry';
import { FrameStore } from '@faregate/queue/frame-store';
import type { Keys } from '@faregate/queue/keys';
import type { ProviderQueues } from '@faregate/queue/queues';
import { CancelRegistry } from './cancel.ts';
import type { WorkerConfig } from './config.ts';
import type { EffectiveLimits, WorkerDeps } from './deps.ts';
import { CircuitBreaker } from './limits/circuit.ts';
import { type LimitSettings, PoolLimiter } from './limits/limiter.ts';
import { createWorkerMetrics } from './metrics.ts';

/**
 * Worker deps for tests, against real Redis, built the way runtime.ts builds them: an `openai` pool
 * talking to `providerUrl` (the fake), the provider call injected, a circuit that never opens in a
 * test's few calls, a silent logger and the built-in prices.
 */
export function testWorkerDeps(o: {
  config: WorkerConfig;
  redis: Redis;
  keys: Keys;
  queues: ProviderQueues;
  call: typeof callProvider;
  /** The embeddings call (default: the real one). */
  embed?: typeof callEmbeddings;
  providerUrl: string;
  limits: EffectiveLimits;
  limiter?: Partial<LimitSettings>;
  /** The circuit's pool name (default `openai`): tests sharing a prefix keep theirs apart. */
  circuitPool?: string;
}): WorkerDeps {
  const { redis, keys } = o;
  const providerConfig = providersFromEnv({ FAKE_PROVIDER_URL: o.providerUrl }).find(
    (p) => p.id === 'openai',
  );
  if (!providerConfig) throw new Error('no openai config');
  const keyCount = providerConfig.apiKeys.length;
  return {
    config: o.config,
    log: pino({ level: 'silent' }),
    redis,
    keys,
    store: new FrameStore(redis, keys),
    queues: o.queues,
    provider: {
      config: providerConfig,
      adapter: adapterForConfig(providerConfig),
      key: (i) => (keyCount === 0 ? undefined : providerConfig.apiKeys[i % keyCount]),
    },
    call: o.call,
    embed: o.embed ?? callEmbeddings,
    cancels: new CancelRegistry(),
    metrics: createWorkerMetrics('openai'),
    queue: o.queues.get('openai'),
    limiter: new PoolLimiter(redis, keys, 'openai', keyCount, { windowMs: 60_000, ...o.limiter }),
    circuit: new CircuitBreaker(redis, keys, o.circuitPool ?? 'openai', {
      windowMs: 10_000,
      minSamples: 100,
      failureRatio: 0.5,
      openMs: 1_000,
    }),
    limits: o.limits,
    prices: new PriceTable(),
  };
}
