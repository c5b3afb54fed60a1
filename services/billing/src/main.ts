import { catalogWithOverrides, loadGatewayConfig } from '@faregate/catalog/gateway-config';
import { BUILTIN_MODELS, PRICES_TAKEN_AT } from '@faregate/catalog/models';
import { createDb } from '@faregate/db/client';
import { runMigrations } from '@faregate/db/migrate';
import { syncPrices } from '@faregate/db/prices';
import { makeKeys } from '@faregate/queue/keys';
import { loadConfig } from './config.ts';
import { connectRedis, createLogger } from './connections.ts';
import { UsageConsumer } from './consumer.ts';
import { startHoldSweeper } from './hold-sweeper.ts';
import { createMetrics } from './metrics.ts';
import { startMetricsServer } from './metrics-server.ts';
import { PriceBook } from './price-book.ts';

// Composition root: the only place that reads the environment.
const config = loadConfig(process.env);
const log = createLogger(config.LOG_LEVEL);

await runMigrations(config.DATABASE_URL);
const { db, close: closeDb } = createDb(config.DATABASE_URL, { max: 4 });
// The built-in catalog with the routing file's price overrides: the same prices the ingress holds against.
const gateway = loadGatewayConfig(config.FAREGATE_CONFIG, process.env);
await syncPrices(db, catalogWithOverrides(BUILTIN_MODELS, gateway), PRICES_TAKEN_AT);
const book = new PriceBook(db);
await book.load();

const redis = connectRedis(config.REDIS_URL);
const metrics = createMetrics();
const deps = { db, redis, book, metrics, log, keys: makeKeys(config.REDIS_PREFIX) };

const consumer = new UsageConsumer(deps, {
  consumer: config.BILLING_CONSUMER,
  batchSize: config.BILLING_BATCH_SIZE,
  batchMs: config.BILLING_BATCH_MS,
  claimIdleMs: config.BILLING_CLAIM_IDLE_MS,
  backoffMaxMs: config.BILLING_BACKOFF_MAX_MS,
});
await consumer.start();
const sweeper = startHoldSweeper(deps, config.BILLING_HOLD_SWEEP_MS);
const priceRefresh = setInterval(
  () => book.load().catch((err) => log.warn({ err }, 'price reload failed')),
  60_000,
);
priceRefresh.unref();
const server = await startMetricsServer(metrics.registry, config.METRICS_PORT, () => !consumer.stopping);
log.info({ consumer: config.BILLING_CONSUMER, metricsPort: server.port }, 'billing started');

let shuttingDown = false;
async function shutdown(signal: string) {
  if (shuttingDown) return;
  shuttingDown = true;
  log.info({ signal }, 'stopping: finishing the current batch');
  clearInterval(priceRefresh);
  await consumer.stop();
  await sweeper.stop();
  await server.close();
  redis.disconnect();
  await closeDb();
  log.info('billing stopped');
}
process.once('SIGTERM', () => void shutdown('SIGTERM'));
process.once('SIGINT', () => void shutdown('SIGINT'));
