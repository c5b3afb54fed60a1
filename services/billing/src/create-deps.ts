import type { CatalogModel } from '@faregate/catalog/models';
import { createDb, type Db } from '@faregate/db/client';
import { type Keys, makeKeys } from '@faregate/queue/keys';
import { createRedis } from '@faregate/queue/redis';
import type { Tracing } from '@faregate/observability/tracing';
import type { RedisClient } from '@faregate/queue/redis';
import { type Logger, pino } from 'pino';
import type { BillingConfig } from './config.ts';
import { type BillingMetrics, createMetrics } from './metrics.ts';
import { PriceBook } from './price-book.ts';

/** Everything billing needs, built once by main.ts (or a test) and passed down. */
export interface BillingDeps {
  config: BillingConfig;
  log: Logger;
  db: Db;
  redis: RedisClient;
  keys: Keys;
  metrics: BillingMetrics;
  book: PriceBook;
  /** Traces (OTLP), off unless configured (main.ts starts them). */
  tracing?: Tracing;
  /** Closes the connections (after the service stopped using them). */
  close(): Promise<void>;
}

export function createLogger(level: string): Logger {
  return pino({ level, base: { service: 'billing' } });
}

/**
 * Builds billing's connections and services from its config. Opens connections, starts nothing.
 * `models`: the deployment's catalog (the routing file's price overrides applied), which the price
 * book reads names and price tiers from (the `prices` rows carry base rates only).
 */
export function createBillingDeps(
  config: BillingConfig,
  log: Logger = createLogger(config.LOG_LEVEL),
  models?: readonly CatalogModel[],
): BillingDeps {
  const { db, close: closeDb } = createDb(config.DATABASE_URL, { max: 4 });
  // Commands wait through reconnects (no per-request retry limit): the consumers' own backoff
  // decides when to give up on a batch, never ioredis.
  const redis = createRedis(config, { blocking: true, name: 'fg-billing' });
  return {
    config,
    log,
    db,
    redis,
    keys: makeKeys(config.REDIS_PREFIX),
    metrics: createMetrics(),
    book: new PriceBook(db, models ? { models } : {}),
    async close() {
      redis.disconnect();
      await closeDb();
    },
  };
}
