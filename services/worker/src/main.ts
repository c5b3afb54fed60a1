import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { pino } from 'pino';
import { makeKeys } from '@faregate/queue/keys';
import { createRedis } from '@faregate/queue/redis';
import { FrameStore } from '@faregate/queue/frame-store';
import { ProviderQueues } from '@faregate/queue/queues';
import { adapterForConfig, providersFromEnv } from '@faregate/providers/registry';
import { callProvider, closeHttp } from '@faregate/providers/call';
import { CancelRegistry } from './cancel.ts';
import { loadConfig } from './config.ts';
import type { WorkerDeps } from './deps.ts';
import { loadGatewayConfig, defaultCircuit } from '@faregate/catalog/gateway-config';
import { CircuitBreaker } from './limits/circuit.ts';
import { baseLimits, merge, readOverrides } from './limits/effective.ts';
import { PoolLimiter } from './limits/limiter.ts';
import { publishDiscovery } from './discovery.ts';
import { createWorkerMetrics, serveMetrics } from './metrics.ts';
import { createPool } from './pool.ts';
import { DEFAULT_FAST_LANE, FastLane } from '@faregate/queue/fast-lane';
import { FastRunner } from './fast-runner.ts';

const config = loadConfig(process.env);
const log = pino({ level: config.LOG_LEVEL, base: { svc: `worker-${config.WORKER_PROVIDER}` } });
const providerConfig = providersFromEnv(process.env).find((p) => p.id === config.WORKER_PROVIDER);
if (!providerConfig) {
  log.fatal(
    `provider "${config.WORKER_PROVIDER}" is not configured: set its API key / base URL (see .env.example), or FAKE_PROVIDER_URL for the demo fake`,
  );
  process.exit(1);
}
if (providerConfig.fake) {
  log.warn('*************************************************************************************');
  log.warn(
    `* NO API KEY FOR "${providerConfig.id}": this pool talks to the FAKE provider at ${providerConfig.baseUrl}`,
  );
  log.warn('* Answers are synthetic. Set the provider key in .env to use the real provider.');
  log.warn('*************************************************************************************');
}

const keys = makeKeys(config.REDIS_PREFIX);
const redis = createRedis(config.REDIS_URL, { name: `fg-worker-${config.WORKER_PROVIDER}` });
const bullConnection = createRedis(config.REDIS_URL, {
  blocking: true,
  name: `fg-worker-${config.WORKER_PROVIDER}-bull`,
});
const sub = createRedis(config.REDIS_URL, {
  blocking: true,
  name: `fg-worker-${config.WORKER_PROVIDER}-sub`,
});
const metrics = createWorkerMetrics(providerConfig.id);
const cancels = new CancelRegistry();
const workerId = `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;

const gatewayConfig = loadGatewayConfig(config.FAREGATE_CONFIG, process.env);
const base = baseLimits(config, gatewayConfig, providerConfig.id);
const queues = new ProviderQueues(redis, keys);
const apiKeys = providerConfig.apiKeys;
const limits = merge(base, await readOverrides(redis, keys, providerConfig.id));
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
  cancels,
  metrics,
  queue: queues.get(providerConfig.id),
  limiter: new PoolLimiter(redis, keys, providerConfig.id, apiKeys.length, {
    ...limits,
    windowMs: config.RATE_WINDOW_MS,
    guardMs: config.RATE_GUARD_MS,
  }),
  circuit: new CircuitBreaker(
    redis,
    keys,
    providerConfig.id,
    gatewayConfig.providers[providerConfig.id]?.circuit ?? defaultCircuit(),
  ),
  limits,
};

/** Applies limits in force (at start and whenever the admin API changes them). */
async function applyLimits(next: typeof limits) {
  const changed = JSON.stringify(next) !== JSON.stringify(deps.limits) || !applied;
  deps.limits = next;
  deps.limiter.settings = {
    rpm: next.rpm,
    tpm: next.tpm,
    windowMs: config.RATE_WINDOW_MS,
    guardMs: config.RATE_GUARD_MS,
  };
  if (!changed) return;
  applied = true;
  if (next.maxInFlight) await deps.queue.setGlobalConcurrency(next.maxInFlight);
  else await deps.queue.removeGlobalConcurrency();
  metrics.limit.set({ limit: 'rpm' }, next.rpm ?? 0);
  metrics.limit.set({ limit: 'tpm' }, next.tpm ?? 0);
  metrics.limit.set({ limit: 'max_in_flight' }, next.maxInFlight ?? 0);
  metrics.limit.set({ limit: 'attempts' }, next.attempts);
  log.info({ limits: next }, 'limits in force');
}
let applied = false;
await applyLimits(limits);
const limitsTimer = setInterval(() => {
  readOverrides(redis, keys, providerConfig.id)
    .then((o) => applyLimits(merge(base, o)))
    .catch((e) => log.warn({ err: String(e) }, 'reading limits failed'));
  deps.queue
    .getJobCounts('wait', 'active', 'delayed', 'prioritized')
    .then((c) => {
      for (const [state, n] of Object.entries(c)) metrics.queueDepth.set({ state }, n);
    })
    .catch(() => {});
  metrics.circuitOpen.set(deps.circuit.state === 'closed' ? 0 : 1);
}, config.LIMITS_REFRESH_MS);
limitsTimer.unref();

await cancels.listen(sub, keys.cancel);
const worker = createPool(deps, bullConnection, workerId);
// The fast lane shares the process's slots with BullMQ: BullMQ fetches only for the slots it leaves.
const fast = config.FAST_LANE
  ? new FastRunner(
      deps,
      new FastLane(redis, keys, providerConfig.id, {
        ...DEFAULT_FAST_LANE,
        graceMs: config.FAST_LANE_GRACE_MS,
        leaseMs: config.WORKER_LOCK_MS,
      }),
      createRedis(config.REDIS_URL, { blocking: true, name: `fg-worker-${config.WORKER_PROVIDER}-fast` }),
      workerId,
      (busy) => {
        worker.concurrency = Math.max(1, config.WORKER_CONCURRENCY - busy);
      },
    )
  : undefined;
const discovered = await publishDiscovery(deps);
log.info({ models: discovered.models.length, source: discovered.source }, 'models discovered');
const discovery = setInterval(() => {
  publishDiscovery(deps).catch((e) => log.warn({ err: String(e) }, 'discovery refresh failed'));
}, config.DISCOVERY_INTERVAL_MS);
discovery.unref();
const metricsServer = serveMetrics(metrics.registry, config.METRICS_PORT, () => worker.isRunning());
void worker.run();
await fast?.start();
log.info(
  { concurrency: config.WORKER_CONCURRENCY, workerId, fastLane: config.FAST_LANE },
  `worker pool "${providerConfig.id}" running`,
);

let stopping = false;
async function shutdown(signal: string) {
  if (stopping) return;
  stopping = true;
  log.info({ signal, inFlight: cancels.size }, 'draining: no new jobs; finishing in-flight ones');
  clearInterval(discovery);
  clearInterval(limitsTimer);
  const timeout = new Promise<'timeout'>((r) =>
    setTimeout(() => r('timeout'), config.SHUTDOWN_TIMEOUT_MS).unref(),
  );
  const fastDrained = fast?.stop(config.SHUTDOWN_TIMEOUT_MS);
  const closed = await Promise.race([worker.close().then(() => 'closed' as const), timeout]);
  if ((await fastDrained) === false) log.warn('drain timeout: fast-lane runs left to their leases');
  if (closed === 'timeout') {
    // Jobs still running are handed back: their locks lapse and another process re-runs them.
    log.warn('drain timeout: handing in-flight jobs back to the queue');
    await worker.close(true).catch(() => {});
  }
  metricsServer?.close();
  await deps.circuit.flush().catch(() => {});
  await deps.queues.close().catch(() => {});
  await closeHttp().catch(() => {});
  redis.disconnect();
  sub.disconnect();
  bullConnection.disconnect();
  log.info('stopped');
  process.exit(0);
}
process.on('SIGTERM', () => void shutdown('SIGTERM'));
process.on('SIGINT', () => void shutdown('SIGINT'));
