import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import { defaultCircuit, loadGatewayConfig, priceTable } from '@faregate/catalog/gateway-config';
import { callEmbeddings, callProvider, closeHttp } from '@faregate/providers/call';
import { adapterForConfig } from '@faregate/providers/registry';
import type { ProviderConfig } from '@faregate/providers/types';
import { DEFAULT_FAST_LANE, FastLane } from '@faregate/queue/fast-lane';
import { FrameStore } from '@faregate/queue/frame-store';
import { makeKeys } from '@faregate/queue/keys';
import { ProviderQueues } from '@faregate/queue/queues';
import { createRedis } from '@faregate/queue/redis';
import { runAttempt } from './attempt.ts';
import { CancelRegistry } from './cancel.ts';
import type { WorkerConfig } from './config.ts';
import type { EffectiveLimits, WorkerDeps } from './deps.ts';
import { publishDiscovery, publishRecord } from './discovery.ts';
import { createQueueIntake } from './intake/bullmq.ts';
import { LaneIntake } from './intake/lane.ts';
import { CircuitBreaker } from './limits/circuit.ts';
import { InFlightGate } from './limits/in-flight.ts';
import { baseLimits, PoolLimits } from './limits/effective.ts';
import { PoolLimiter } from './limits/limiter.ts';
import { startMetricsServer } from '@faregate/observability/metrics-server';
import { startTracing } from '@faregate/observability/tracing';
import { createWorkerMetrics } from './metrics.ts';
import { Runner } from './runner.ts';

/** How often this process re-reads the pool's learned pauses (set by any process) into its local view. */
const PAUSE_REFRESH_MS = 250;

export interface WorkerService {
  deps: WorkerDeps;
  start(): Promise<void>;
  /** Drains (no new jobs, in-flight ones finish or are handed back after SHUTDOWN_TIMEOUT_MS), then closes. */
  stop(signal: string): Promise<void>;
}

/**
 * One provider pool's worker process: builds its deps once (connections, limits, circuit, intakes,
 * runner) and runs them. `env` is read here only for the gateway config file's `${ENV}` values.
 */
export async function createWorkerService(
  config: WorkerConfig,
  providerConfig: ProviderConfig,
  log: Logger,
  env: Record<string, string | undefined>,
): Promise<WorkerService> {
  const keys = makeKeys(config.REDIS_PREFIX);
  const name = `fg-worker-${config.WORKER_PROVIDER}`;
  const redis = createRedis(config, { name });
  const bullConnection = createRedis(config, { blocking: true, name: `${name}-bull` });
  const sub = createRedis(config, { blocking: true, subscriber: true, name: `${name}-sub` });
  const metrics = createWorkerMetrics(providerConfig.id);
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
    store: new FrameStore(redis, keys),
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
  const queueIntake = createQueueIntake(deps, runner, bullConnection, workerId);
  const laneIntake = config.FAST_LANE
    ? new LaneIntake(
        deps,
        runner,
        new FastLane(redis, keys, providerConfig.id, {
          ...DEFAULT_FAST_LANE,
          graceMs: config.FAST_LANE_GRACE_MS,
          leaseMs: config.WORKER_LOCK_MS,
        }),
        createRedis(config, { blocking: true, name: `${name}-fast` }),
      )
    : undefined;

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
  let metricsServer: Awaited<ReturnType<typeof startMetricsServer>> | undefined;

  return {
    deps,
    async start() {
      await applyLimits(limits);
      every(
        config.LIMITS_REFRESH_MS,
        async () => {
          await applyLimits(await poolLimits.refresh());
          const c = await deps.queue.getJobCounts('wait', 'active', 'delayed', 'prioritized');
          for (const [state, n] of Object.entries(c)) metrics.queueDepth.set({ state }, n);
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
      let discovered = await publishDiscovery(deps);
      log.info({ models: discovered.models.length, source: discovered.source }, 'models discovered');
      every(
        config.DISCOVERY_INTERVAL_MS,
        async () => {
          discovered = await publishDiscovery(deps);
        },
        'discovery refresh',
      );
      every(config.LIVENESS_INTERVAL_MS, () => publishRecord(deps, discovered), 'liveness refresh');
      // Port 0 turns the metrics server off (many workers on one host in tests and benches).
      if (config.METRICS_PORT !== 0) {
        metricsServer = await startMetricsServer({
          registry: metrics.registry,
          port: config.METRICS_PORT,
          healthy: () => queueIntake.isRunning(),
        });
      }
      void queueIntake.run();
      await laneIntake?.start();
      log.info(
        { concurrency: config.WORKER_CONCURRENCY, workerId, fastLane: config.FAST_LANE },
        `worker pool "${providerConfig.id}" running`,
      );
    },
    async stop(signal) {
      deps.limiter.releaseLeases();
      log.info({ signal, inFlight: runner.busy }, 'draining: no new jobs; finishing in-flight ones');
      for (const t of timers) clearInterval(t);
      const timeout = new Promise<'timeout'>((r) =>
        setTimeout(() => r('timeout'), config.SHUTDOWN_TIMEOUT_MS).unref(),
      );
      const laneDrained = laneIntake?.stop(config.SHUTDOWN_TIMEOUT_MS);
      const closed = await Promise.race([queueIntake.close().then(() => 'closed' as const), timeout]);
      if ((await laneDrained) === false) log.warn('drain timeout: fast-lane runs left to their leases');
      if (closed === 'timeout') {
        // Jobs still running are handed back: their locks lapse and another process re-runs them.
        log.warn('drain timeout: handing in-flight jobs back to the queue');
        await queueIntake.close(true).catch(() => {});
      }
      await metricsServer?.close();
      await deps.tracing?.shutdown().catch(() => {});
      await deps.circuit.flush().catch(() => {});
      await deps.queues.close().catch(() => {});
      await closeHttp().catch(() => {});
      redis.disconnect();
      sub.disconnect();
      bullConnection.disconnect();
      log.info('stopped');
    },
  };
}
