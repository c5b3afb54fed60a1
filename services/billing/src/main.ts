import { catalogWithOverrides, loadGatewayConfig } from '@faregate/catalog/gateway-config';
import { BUILTIN_MODELS, PRICES_TAKEN_AT } from '@faregate/catalog/models';
import { runMigrations } from '@faregate/db/migrate';
import { startMetricsServer } from '@faregate/observability/metrics-server';
import { startTracing } from '@faregate/observability/tracing';
import { syncPrices } from '@faregate/db/prices';
import { createBilling } from './billing.ts';
import { loadConfig } from './config.ts';
import { createBillingDeps, createLogger } from './create-deps.ts';

// Composition root: the only place that reads the environment.
const config = loadConfig(process.env);
const gateway = loadGatewayConfig(config.FAREGATE_CONFIG, process.env);
await runMigrations(config.DATABASE_URL);
// The built-in catalog with the routing file's price overrides: the same prices the ingress holds
// against, synced to the `prices` table and read back by the price book with their tiers.
const models = catalogWithOverrides(BUILTIN_MODELS, gateway);
const deps = createBillingDeps(config, createLogger(config.LOG_LEVEL), models);
deps.tracing = await startTracing('billing', process.env);
const { log } = deps;
await syncPrices(deps.db, models, PRICES_TAKEN_AT);

const billing = createBilling(deps);
await billing.start();
const server = await startMetricsServer({
  registry: deps.metrics.registry,
  port: config.METRICS_PORT,
  healthy: billing.healthy,
});
log.info({ consumer: config.BILLING_CONSUMER, metricsPort: server.port }, 'billing started');

let shuttingDown = false;
async function shutdown(signal: string) {
  if (shuttingDown) return;
  shuttingDown = true;
  log.info({ signal }, 'stopping: finishing the current batch');
  await billing.stop();
  await server.close();
  await deps.tracing?.shutdown().catch(() => {});
  await deps.close();
  log.info('billing stopped');
}
process.once('SIGTERM', () => void shutdown('SIGTERM'));
process.once('SIGINT', () => void shutdown('SIGINT'));
