import type { Logger } from 'pino';
import { closeHttp } from '@faregate/providers/call';
import type { ProviderConfig } from '@faregate/providers/types';
import { DEFAULT_FAST_LANE, FastLane } from '@faregate/queue/fast-lane';
import { createRedis } from '@faregate/queue/redis';
import { startMetricsServer } from '@faregate/observability/metrics-server';
import type { WorkerConfig } from '@faregate/pool/config';
import type { WorkerDeps } from '@faregate/pool/deps';
import { publishDiscovery, publishRecord } from '@faregate/pool/discovery';
import { createQueueIntake } from '@faregate/pool/intake/bullmq';
import { LaneIntake } from '@faregate/pool/intake/lane';
import { createPoolRuntime } from '@faregate/pool/runtime';

export interface WorkerService {
  deps: WorkerDeps;
  start(): Promise<void>;
  /** Drains (no new jobs, in-flight ones finish or are handed back after SHUTDOWN_TIMEOUT_MS), then closes. */
  stop(signal: string): Promise<void>;
}

/**
 * One provider pool's worker process: the pool's runtime with both intakes (BullMQ, the fast lane),
 * discovery, liveness and the metrics server.
 */
export async function createWorkerService(
  config: WorkerConfig,
  providerConfig: ProviderConfig,
  log: Logger,
  env: Record<string, string | undefined>,
): Promise<WorkerService> {
  const name = `fg-worker-${config.WORKER_PROVIDER}`;
  const redis = createRedis(config, { name });
  const bullConnection = createRedis(config, { blocking: true, name: `${name}-bull` });
  const sub = createRedis(config, { blocking: true, subscriber: true, name: `${name}-sub` });
  const pool = await createPoolRuntime(config, providerConfig, log, env, redis);
  const { deps, runner, workerId, every } = pool;
  const { keys, metrics } = deps;
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

  let metricsServer: Awaited<ReturnType<typeof startMetricsServer>> | undefined;

  return {
    deps,
    async start() {
      await pool.start(sub);
      every(
        config.LIMITS_REFRESH_MS,
        async () => {
          const c = await deps.queue.getJobCounts('wait', 'active', 'delayed', 'prioritized');
          for (const [state, n] of Object.entries(c)) metrics.queueDepth.set({ state }, n);
        },
        'reading queue depth',
      );
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
      log.info({ signal, inFlight: runner.busy }, 'draining: no new jobs; finishing in-flight ones');
      pool.stop();
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
