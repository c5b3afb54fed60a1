import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import { defaultCircuit, loadGatewayConfig, priceTable } from '@faregate/catalog/gateway-config';
import { callEmbeddings, callProvider } from '@faregate/providers/call';
import { adapterForConfig } from '@faregate/providers/registry';
import type { ProviderConfig } from '@faregate/providers/types';
import { FrameStore, type LocalReply } from '@faregate/queue/frame-store';
import { makeKeys } from '@faregate/queue/keys';
import { ProviderQueues } from '@faregate/queue/queues';
import type { RedisClient } from '@faregate/queue/redis';
import { startTracing } from '@faregate/observability/tracing';
import { runAttempt } from './attempt.ts';
import { CancelRegistry } from './cancel.ts';
import type { WorkerConfig } from './config.ts';
import type { EffectiveLimits, WorkerDeps } from './deps.ts';
import { CircuitBreaker } from './limits/circuit.ts';
import { InFlightGate } from './limits/in-flight.ts';
import { baseLimits, PoolLimits } from './limits/effective.ts';
import { PoolLimiter } from './limits/limiter.ts';
import { createWorkerMetrics } from './metrics.ts';
import { Runner } from './runner.ts';

/** How often this process re-reads the pool's learned pauses (set by any process) into its local view. */
const PAUSE_REFRESH_MS = 250;

/** A pool's runtime in one process: its deps, the runner, the limits in force and their upkeep. */
export interface PoolRuntime {
  deps: WorkerDeps;
  runner: Runner;
  workerId: string;
  /** Starts the upkeep: limits read, pauses refreshed, in-flight leases renewed, cancels heard. */
  start(sub: RedisClient): Promise<void>;
  /** Stops the upkeep timers and gives back rate-limit leases. */
  stop(): void;
  /** Runs `f` every `ms` until `stop` (failures logged as `what failed`). */
  every(ms: number, f: () => Promise<unknown>, what: string): void;
}

/**
 * Builds one provider pool's runtime (connections, limits, circuit, runner) on `redis`. A worker
 * process runs it with its intakes (createWorkerService); an ingress that hosts the pool runs it
 * with a local lane intake only (services/ingress/src/local-pools.ts). `env` is read here only
 * for the gateway config file's `${ENV}` values.
 */
export async function createPoolRuntime(
  config: WorkerConfig,
  providerConfig: ProviderConfig,
  log: Logger,
  env: Record<string, string | undefined>,
  redis: RedisClient,
  /**
   * `hosted`: run by a process that is not the pool's worker (an ingress: no process metrics of its
   * own); `localReply`: that process's reply channel, whose frames skip Redis (FrameStore).
   */
  opts: { hosted?: boolean; localReply?: LocalReply } = {},
): Promise<PoolRuntime> {
  const keys = makeKeys(config.REDIS_PREFIX);
  const metrics = createWorkerMetrics(providerConfig.id, { process: !opts.hosted });
  const workerId = `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
  const gatewayConfig = loadGatewayConfig(config.FAREGATE_CONFIG, env);
  const base = baseLimits(config, gatewayConfig, providerConfig.id);
  const queues = new ProviderQueues(redis, keys);
  const apiKeys = providerConfig.apiKeys;
  const poolLimits = new PoolLimits(redis, keys, providerConfig.id, base, config.RATE_WINDOW_MS);
  const limits = await poolLimits.refresh();
  const deps: WorkerDeps = {
    config,
    log,
    redis,
    keys,
    store: new FrameStore(redis, keys, opts.localReply),
    queues,
    provider: {
      config: providerConfig,
      adapter: adapterForConfig(providerConfig),
      key: (i) => (apiKeys.length === 0 ? undefined : apiKeys[i % apiKeys.length]),
    },
    call: callProvider,
    embed: callEmbeddings,
    cancels: new CancelRegistry(),
    metrics,
    queue: queues.get(providerConfig.id),
    limiter: new PoolLimiter(redis, keys, providerConfig.id, apiKeys.length, {
      ...limits,
      windowMs: config.RATE_WINDOW_MS,
      guardMs: config.RATE_GUARD_MS,
      leaseMs: config.RATE_LEASE_MS,
    }),
    circuit: new CircuitBreaker(
      redis,
      keys,
      providerConfig.id,
      gatewayConfig.providers[providerConfig.id]?.circuit ?? defaultCircuit(),
    ),
    limits,
    prices: priceTable(gatewayConfig),
    tracing: await startTracing(`worker-${providerConfig.id}`, env),
  };
  const inFlight = new InFlightGate(redis, keys, providerConfig.id, config.WORKER_LOCK_MS);
  const runner = new Runner({
    config,
    limits,
    metrics,
    inFlight,
    limiter: deps.limiter,
    attempt: (input) => runAttempt(deps, input),
    workerId,
  });

  let applied: EffectiveLimits | undefined;
  /** Applies limits in force (at start and whenever the admin API changes them). */
  async function applyLimits(limitsNow: EffectiveLimits): Promise<void> {
    const next = { ...limitsNow };
    // The runner reads the same object: limits change in place.
    Object.assign(deps.limits, { rpm: undefined, tpm: undefined, maxInFlight: undefined }, next);
    deps.limiter.settings = {
      rpm: next.rpm,
      tpm: next.tpm,
      windowMs: config.RATE_WINDOW_MS,
      guardMs: config.RATE_GUARD_MS,
      leaseMs: config.RATE_LEASE_MS,
    };
    if (applied && JSON.stringify(next) === JSON.stringify(applied)) return;
    // A lease taken under the old limits is not used under the new ones.
    if (applied) deps.limiter.releaseLeases();
    applied = { ...next };
    // BullMQ's global concurrency: the max-in-flight less the lane runs in flight (in-flight.ts).
    await inFlight.setLimit(next.maxInFlight);
    metrics.limit.set({ limit: 'rpm' }, next.rpm ?? 0);
    metrics.limit.set({ limit: 'tpm' }, next.tpm ?? 0);
    metrics.limit.set({ limit: 'max_in_flight' }, next.maxInFlight ?? 0);
    metrics.limit.set({ limit: 'attempts' }, next.attempts);
    log.info({ limits: next }, 'limits in force');
  }
  // Limits learned from the provider's headers apply in this process at once, elsewhere on refresh.
  deps.limiter.observer = (i, info) => {
    if (!poolLimits.observe(i, info, deps.limiter)) return;
    applyLimits(poolLimits.current()).catch((e: unknown) =>
      log.warn({ err: String(e) }, 'applying limits failed'),
    );
  };

  const timers: NodeJS.Timeout[] = [];
  const every = (ms: number, f: () => Promise<unknown>, what: string) => {
    const t = setInterval(() => {
      f().catch((e: unknown) => log.warn({ err: String(e) }, `${what} failed`));
    }, ms);
    t.unref();
    timers.push(t);
  };

  return {
    deps,
    runner,
    workerId,
    every,
    async start(sub) {
      await applyLimits(limits);
      every(
        config.LIMITS_REFRESH_MS,
        async () => {
          await applyLimits(await poolLimits.refresh());
          metrics.circuitOpen.set(deps.circuit.state === 'closed' ? 0 : 1);
        },
        'reading limits',
      );
      every(PAUSE_REFRESH_MS, () => deps.limiter.refreshPauses(), 'reading pauses');
      every(
        Math.max(100, Math.floor(config.WORKER_LOCK_MS / 3)),
        () => inFlight.renew(),
        'renewing in-flight leases',
      );
      await deps.cancels.listen(sub, keys);
    },
    stop() {
      deps.limiter.releaseLeases();
      for (const t of timers) clearInterval(t);
    },
  };
}
