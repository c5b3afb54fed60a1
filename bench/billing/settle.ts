// Billing settlement benchmark: events settled per second, and settle lag under a steady load.
//   REDIS_URL=redis://127.0.0.1:6379 DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres node bench/billing/settle.ts
// Options (env): BENCH_EVENTS (throughput run, default 100000), BENCH_RATE (steady run, events/s, default 1000),
// BENCH_SECONDS (steady run, default 10), BILLING_BATCH_SIZE (default 1000).
import { randomBytes } from 'node:crypto';
// bench/ is not a workspace package: everything comes in by relative path (deps resolve from there).
import { BUILTIN_MODELS } from '../../packages/catalog/src/models.ts';
import type { UsageEvent } from '../../packages/contracts/src/usage.ts';
import { addCredit, createAccount, createApiKey } from '../../packages/db/src/accounts.ts';
import { createDb } from '../../packages/db/src/client.ts';
import { CLEAN_LEDGER, checkLedgerInvariants } from '../../packages/db/src/invariants.ts';
import { runMigrations } from '../../packages/db/src/migrate.ts';
import { syncPrices } from '../../packages/db/src/prices.ts';
import { makeKeys, USAGE_PARTITIONS } from '../../packages/queue/src/keys.ts';
import { createRedis } from '../../packages/queue/src/redis.ts';
import { UsageConsumer } from '../../services/billing/src/consumer.ts';
import { createLogger } from '../../services/billing/src/create-deps.ts';
import { createMetrics } from '../../services/billing/src/metrics.ts';
import { PriceBook } from '../../services/billing/src/price-book.ts';

const env = process.env;
const REDIS_URL = env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const ADMIN_URL = env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const N = Number(env.BENCH_EVENTS ?? 100_000);
const RATE = Number(env.BENCH_RATE ?? 1_000);
const SECONDS = Number(env.BENCH_SECONDS ?? 10);
const BATCH = Number(env.BILLING_BATCH_SIZE ?? 1_000);

const dbName = `fg_bench_${randomBytes(4).toString('hex')}`;
const adminDb = createDb(ADMIN_URL, { max: 1 });
const admin = adminDb.pool;
await admin.query(`CREATE DATABASE ${dbName}`);
const url = new URL(ADMIN_URL);
url.pathname = `/${dbName}`;
await runMigrations(url.toString());
const { db, close } = createDb(url.toString(), { max: 4 });
await syncPrices(db, BUILTIN_MODELS, '2026-01-01');

const prefix = `bench${randomBytes(3).toString('hex')}`;
const keys = makeKeys(prefix);
const redis = createRedis(REDIS_URL, { blocking: true, name: 'fg-billing-bench' });

const tenants: Array<{ account: string; key: string }> = [];
for (let i = 0; i < 200; i++) {
  const { id } = await createAccount(db, { name: `t${i}` });
  await addCredit(db, { accountId: id, amountMicros: 1_000_000_000n });
  tenants.push({ account: id, key: (await createApiKey(db, { accountId: id, name: 'k' })).id });
}
const models = BUILTIN_MODELS.filter((m) => m.price);
let seq = 0;
function event(at: number): UsageEvent {
  const t = tenants[seq % tenants.length]!;
  const m = models[seq % models.length]!;
  const requestId = `req_${seq++}`;
  return {
    v: 1,
    id: `${requestId}.h0.a0`,
    requestId,
    account: t.account,
    key: t.key,
    provider: m.provider,
    model: m.id,
    hop: 0,
    attempt: 0,
    inputTokens: 1200,
    cachedInputTokens: 200,
    cacheWriteTokens: 0,
    outputTokens: 350,
    reasoningTokens: 0,
    outcome: 'success',
    final: true,
    at,
  };
}

async function produce(count: number, at = () => Date.now()) {
  for (let i = 0; i < count; i += 1_000) {
    const p = redis.pipeline();
    for (let j = i; j < Math.min(count, i + 1_000); j++)
      p.xadd(keys.usage(j % USAGE_PARTITIONS), '*', 'e', JSON.stringify(event(at())));
    await p.exec();
  }
}

async function drained() {
  for (;;) {
    const s = await consumer.status();
    if (s.pending === 0 && s.backlog === 0) return;
    await new Promise((r) => setTimeout(r, 10)); // polling the bench's own stop condition
  }
}

const book = new PriceBook(db);
await book.load();
const metrics = createMetrics();
const consumer = new UsageConsumer(
  { db, redis, keys, book, metrics, log: createLogger('warn') },
  { consumer: 'bench', batchSize: BATCH },
);

// 1) Throughput: a backlog of N events, settled as fast as possible.
await produce(N, () => Date.now());
const t0 = performance.now();
await consumer.start();
await drained();
const secs = (performance.now() - t0) / 1000;
const pgSecs =
  (await metrics.batchSeconds.get()).values.find((v) => v.metricName?.endsWith('_sum'))?.value ?? 0;
console.log(
  `throughput: ${N} events in ${secs.toFixed(2)} s = ${Math.round(N / secs)} events/s (batch ${BATCH}; ` +
    `${((pgSecs / secs) * 100).toFixed(0)}% of the time inside the Postgres transaction)`,
);

// 2) Lag under a steady load: XADD at RATE/s for SECONDS; lag = settle time − event time.
const before = seq;
const tick = 10;
const perTick = Math.max(1, Math.round((RATE * tick) / 1000));
const end = Date.now() + SECONDS * 1000;
const started = Date.now();
let sent = 0;
while (Date.now() < end) {
  const due = Math.floor(((Date.now() - started) / 1000) * RATE) - sent;
  if (due > 0) {
    const p = redis.pipeline();
    for (let i = 0; i < due; i++)
      p.xadd(keys.usage((sent + i) % USAGE_PARTITIONS), '*', 'e', JSON.stringify(event(Date.now())));
    await p.exec();
    sent += due;
  }
  await new Promise((r) => setTimeout(r, tick)); // pacing the load generator
}
await drained();
const lag = await db.$client.query<{ p50: number; p99: number; max: number; n: string }>(
  `SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS p50, percentile_cont(0.99) WITHIN GROUP (ORDER BY ms) AS p99,
          max(ms) AS max, count(*)::text AS n
     FROM (SELECT extract(epoch FROM settled_at - occurred_at) * 1000 AS ms FROM usage_events
            WHERE request_id = ANY($1::text[])) x`,
  [Array.from({ length: seq - before }, (_, i) => `req_${before + i}`)],
);
const l = lag.rows[0]!;
console.log(
  `steady ${RATE}/s for ${SECONDS} s: ${l.n} events, settle lag p50 ${l.p50.toFixed(1)} ms, p99 ${l.p99.toFixed(1)} ms, max ${Number(l.max).toFixed(1)} ms (perTick≈${perTick})`,
);

const inv = await checkLedgerInvariants(db);
console.log(
  `ledger invariants: ${JSON.stringify(inv, (_, v) => (typeof v === 'bigint' ? v.toString() : v)) === JSON.stringify({ ...CLEAN_LEDGER, globalSumMicros: '0' }) ? 'clean' : JSON.stringify(inv, (_, v) => (typeof v === 'bigint' ? v.toString() : v))}`,
);

await consumer.stop();
const found = await redis.keys(`${prefix}:*`);
if (found.length) await redis.del(...found);
redis.disconnect();
await close();
await admin.query(`DROP DATABASE ${dbName} WITH (FORCE)`);
await adminDb.close();
