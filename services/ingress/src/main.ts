import { loadGatewayConfig } from '@faregate/catalog/gateway-config';
import { buildApp } from './app.ts';
import { prepareIngress } from './bootstrap.ts';
import { loadConfig } from './config.ts';
import { createIngressDeps } from './create-deps.ts';
import { startMetricsServer } from '@faregate/observability/metrics-server';
import { startTracing } from '@faregate/observability/tracing';
import { poolMetrics } from './metrics.ts';
import { serve } from './server.ts';
import { BatchDriver } from './openai-batches/driver.ts';
import { FileSweeper } from './files/sweep.ts';
import { LocalPools } from './local-pools.ts';

// Composition root: the only place that reads the environment. It wires and starts; what runs once
// before listening (migrations, prices, the bootstrap account and credit) is in bootstrap.ts.
const config = loadConfig(process.env);
const gateway = loadGatewayConfig(config.FAREGATE_CONFIG, process.env);
const deps = await createIngressDeps(config, gateway);
deps.tracing = await startTracing('ingress', process.env);
// The pools this process hosts (INGRESS_POOLS): lane requests run here when a local slot is free.
const localPools = await LocalPools.start(config, process.env, deps.log, deps.hub);
deps.localPools = localPools;
// The lanes of the pools this deployment runs are looked up now, not at each pool's first request
// (which would otherwise go through BullMQ while the lookup runs).
for (const pool of new Set([...config.EXPECTED_POOLS, ...(localPools?.providers ?? [])]))
  deps.fastLanes?.lane(pool);
await deps.fastLanes?.refresh();
await prepareIngress(deps, gateway);
const app = await buildApp(deps);
// OpenAI batches: every ingress process drives the batches it holds the lease of.
const batchDriver = new BatchDriver(deps);
// Files: expired ones, uploads cut short and bytes left without a record are removed.
const fileSweeper = new FileSweeper(deps);
const metricsServer =
  config.METRICS_PORT === 0
    ? undefined
    : await startMetricsServer({
        registry: deps.metrics.registry,
        port: config.METRICS_PORT,
        host: config.HOST,
        healthy: () => true,
        // BullMQ's queue metrics and the backlog KEDA scales on, for every pool expected or live.
        // The pools this process hosts report their runs here (faregate_worker_*{provider}).
        extra: async () =>
          [
            await poolMetrics(deps, [
              ...new Set([...deps.config.EXPECTED_POOLS, ...deps.directory.providers]),
            ]),
            (await localPools?.metrics()) ?? '',
          ]
            .filter(Boolean)
            .join('\n'),
      });
await serve(app, {
  port: config.PORT,
  host: config.HOST,
  log: deps.log,
  onClose: async () => {
    // HTTP requests were drained; a WebSocket submit still running gets a while, then its lease lapses.
    await localPools?.stop(5_000);
    await batchDriver.stop();
    await fileSweeper.stop();
    await metricsServer?.close();
    await deps.tracing?.shutdown();
    await deps.close();
  },
});
batchDriver.start();
fileSweeper.start();
deps.log.info({ port: config.PORT, pools: deps.directory.providers }, 'ingress listening');
