// Test-only helpers for billing's integration tests (real Redis and Postgres).
import type { UsageEvent } from '@faregate/contracts/usage';
import { BUILTIN_MODELS } from '@faregate/catalog/models';
import { createDb, type Db } from '@faregate/db/client';
import { runMigrations } from '@faregate/db/migrate';
import { syncPrices } from '@faregate/db/prices';
import type { CreditCommand } from '@faregate/contracts/credits';
import { makeKeys, type Keys, usagePartition } from '@faregate/queue/keys';
import { createRedis } from '@faregate/queue/redis';
import { freshDatabase, testRedis } from '@faregate/testing/env';
import type { Redis } from 'ioredis';
import { pino } from 'pino';
import { type ConsumerOptions, UsageConsumer } from './consumer.ts';
import { CreditConsumer } from './credit-consumer.ts';
import { createMetrics } from './metrics.ts';
import { PriceBook } from './price-book.ts';
import { type Entry, readGroup, type StreamStatus, streamStatus } from './stream.ts';
export { rng } from '@faregate/testing/random';

export const PRICES_AT = '2026-01-01';

export interface Harness {
  dbUrl: string;
  redisUrl: string;
  db: Db;
  keys: Keys;
  redis: Redis;
  consumer(
    name: string,
    opts?: Partial<ConsumerOptions>,
    dbOverride?: Db,
  ): Promise<UsageConsumer & { metrics: ReturnType<typeof createMetrics> }>;
  /** Appends a usage event to its request's usage partition (raw text goes to partition 0). */
  xadd(e: UsageEvent | string): Promise<string>;
  /** The usage consumer group's lag over every partition. */
  usageStatus(): Promise<StreamStatus>;
  /** XREADGROUP of new entries from every usage partition, as `consumer` (a consumer that then dies). */
  readUsage(consumer: string, count: number): Promise<Entry[]>;
  creditConsumer(
    name: string,
    opts?: Partial<ConsumerOptions>,
  ): Promise<CreditConsumer & { metrics: ReturnType<typeof createMetrics> }>;
  /** Appends a credit command (or raw text as its `c` field) to the credits stream. */
  xaddCredit(c: CreditCommand | string): Promise<string>;
  close(): Promise<void>;
}

export async function harness(): Promise<Harness> {
  const fresh = await freshDatabase();
  await runMigrations(fresh.url);
  const { db, close: closeDb } = createDb(fresh.url, { max: 8 });
  await syncPrices(db, BUILTIN_MODELS, PRICES_AT);
  const r = testRedis();
  const keys = makeKeys(r.prefix);
  const redis = createRedis(r.url, { blocking: true, name: 'fg-billing-test' });
  const extra: Array<() => Promise<void> | void> = [];
  const log = pino({ level: 'silent' });
  return {
    dbUrl: fresh.url,
    redisUrl: r.url,
    db,
    keys,
    redis,
    async consumer(name, opts = {}, dbOverride) {
      const metrics = createMetrics();
      const d = dbOverride ?? db;
      const book = new PriceBook(d);
      await book.load();
      const c = new UsageConsumer(
        { db: d, redis, keys, book, metrics, log },
        { consumer: name, batchMs: 20, statusEveryMs: 100, ...opts },
      );
      await c.start();
      extra.push(async () => {
        await c.stop();
      });
      return Object.assign(c, { metrics });
    },
    xadd: (e) =>
      typeof e === 'string'
        ? (redis.xadd(keys.usage(0), '*', 'e', e) as Promise<string>)
        : (redis.xadd(
            keys.usage(usagePartition(e.requestId)),
            '*',
            'e',
            JSON.stringify(e),
          ) as Promise<string>),
    async usageStatus() {
      const all = await Promise.all(keys.usageStreams.map((k) => streamStatus(redis, k, keys.usageGroup)));
      return {
        pending: all.reduce((n, s) => n + s.pending, 0),
        backlog: all.reduce((n, s) => n + s.backlog, 0),
        oldestMs: null,
        trimBelow: null,
      };
    },
    async readUsage(consumer, count) {
      const lists = await Promise.all(
        keys.usageStreams.map((key) =>
          readGroup(redis, { key, group: keys.usageGroup, consumer, count, id: '>' }),
        ),
      );
      return lists.flat();
    },
    async creditConsumer(name, opts = {}) {
      const metrics = createMetrics();
      const c = new CreditConsumer(
        { db, redis, keys, metrics, log },
        { consumer: name, batchMs: 10, statusEveryMs: 100, ...opts },
      );
      await c.start();
      extra.push(() => c.stop());
      return Object.assign(c, { metrics });
    },
    xaddCredit: (c) =>
      redis.xadd(keys.credits, '*', 'c', typeof c === 'string' ? c : JSON.stringify(c)) as Promise<string>,
    async close() {
      for (const f of extra) await f();
      const found = await redis.keys(`${r.prefix}:*`);
      if (found.length > 0) await redis.del(...found);
      redis.disconnect();
      await closeDb();
      await fresh.drop();
    },
  };
}

export function usageEvent(
  over: Partial<UsageEvent> & Pick<UsageEvent, 'requestId' | 'account' | 'key'>,
): UsageEvent {
  const hop = over.hop ?? 0;
  const attempt = over.attempt ?? 0;
  return {
    v: 1,
    id: `${over.requestId}.h${hop}.a${attempt}`,
    provider: 'openai',
    model: 'gpt-4o-mini',
    hop,
    attempt,
    inputTokens: 100,
    cachedInputTokens: 0,
    cacheWriteTokens: 0,
    outputTokens: 50,
    reasoningTokens: 0,
    outcome: 'success',
    final: true,
    at: Date.now(),
    ...over,
  };
}

export function creditCommand(
  over: Partial<CreditCommand> & Pick<CreditCommand, 'key' | 'account'>,
): CreditCommand {
  return { v: 1, amountMicros: '1000000', reference: null, at: Date.now(), ...over };
}

/** Sums a metric's values (all label sets). */
export async function metricValue(
  m: { get(): Promise<{ values: Array<{ value: number; labels: Record<string, unknown> }> }> },
  labels: Record<string, string> = {},
): Promise<number> {
  const { values } = await m.get();
  return values
    .filter((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x))
    .reduce((s, v) => s + v.value, 0);
}
