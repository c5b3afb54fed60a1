import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { pino, type Logger } from 'pino';
import { createDb } from '@faregate/db/client';
import { FrameStore } from '@faregate/queue/frame-store';
import { makeKeys } from '@faregate/queue/keys';
import { LiveHub } from '@faregate/queue/live-hub';
import { ProviderQueues } from '@faregate/queue/queues';
import { DEFAULT_FAST_LANE, FastLanes } from '@faregate/queue/fast-lane';
import { LostPools } from './routing/lost-pools.ts';
import { createRedis } from '@faregate/queue/redis';
import { usdToMicros } from '@faregate/catalog/money';
import { Budget } from './budget.ts';
import { createIngressMetrics } from './metrics.ts';
import { Authenticator } from './plugins/auth.ts';
import { type IngressConfig, longestJobMs } from './config.ts';
import { BUILTIN_MODELS } from '@faregate/catalog/models';
import { GatewayConfig, catalogWithOverrides } from '@faregate/catalog/gateway-config';
import type { IngressDeps } from './deps.ts';
import { LOG_REDACT } from './app.ts';
import { ModelDirectory } from './routing/directory.ts';
import { Router } from './routing/router.ts';
import { BacklogGate } from './backlog-gate.ts';

/** Builds the ingress's connections and services from its config (used by main.ts and tests). */
export async function createIngressDeps(
  config: IngressConfig,
  gateway: GatewayConfig = GatewayConfig.parse({}),
  log: Logger = pino({ level: config.LOG_LEVEL, redact: LOG_REDACT, base: { svc: 'ingress' } }),
): Promise<IngressDeps & { close(): Promise<void> }> {
  const keys = makeKeys(config.REDIS_PREFIX);
  const redis = createRedis(config, { name: 'fg-ingress' });
  const sub = createRedis(config, { blocking: true, subscriber: true, name: 'fg-ingress-sub' });
  // Admission uses Postgres rarely (a budget lease now and then): keep idle connections open for a
  // while, so a lease or a burst of exact holds does not wait for new connections.
  const { db, close: closeDb } = createDb(config.DATABASE_URL, { max: 20, idleTimeoutMs: 300_000 });
  const hub = new LiveHub(sub, keys);
  const auth = new Authenticator(db);
  // A key revoked through any ingress stops working in this one at once (see Authenticator).
  sub.on('message', (channel: string, keyId: string) => {
    if (channel === keys.revocations) auth.revoked(keyId);
  });
  await sub.subscribe(keys.revocations);
  // One subscription per ingress process carries the frames of every job submitted here.
  await hub.listenReplies(
    keys.replyChannel(`${hostname()}-${process.pid}-${randomBytes(4).toString('hex')}`),
  );
  const directory = new ModelDirectory(redis, keys, catalogWithOverrides(BUILTIN_MODELS, gateway));
  await directory.refresh();
  directory.start(config.DIRECTORY_REFRESH_MS);
  const queues = new ProviderQueues(redis, keys);
  const fastLanes = new FastLanes(redis, keys, { ...DEFAULT_FAST_LANE, graceMs: config.FAST_LANE_GRACE_MS });
  const metrics = createIngressMetrics();
  const store = new FrameStore(redis, keys);
  // Jobs queued for a pool whose every worker is gone or frozen go on to their next live hop.
  const lostPools = new LostPools({
    directory,
    redis,
    queues,
    fastLanes,
    store,
    log,
    ttl: config,
    onMoved: (from, to) => metrics.lostPoolMoves.inc({ from, to }),
  });
  lostPools.start(config.DIRECTORY_REFRESH_MS);
  const budget = new Budget(db, {
    leaseRequests: config.BUDGET_LEASE_REQUESTS,
    leaseMaxMicros: usdToMicros(config.BUDGET_LEASE_MAX_USD),
    leaseMinRequests: config.BUDGET_LEASE_MIN_REQUESTS,
    leaseTtlMs: config.BUDGET_LEASE_TTL_MS,
    idleMs: config.BUDGET_LEASE_IDLE_MS,
    requestTimeoutMs: longestJobMs(config),
  });
  return {
    config,
    log,
    redis,
    keys,
    store,
    hub,
    queues,
    fastLanes,
    db,
    auth,
    budget,
    backlogGate: new BacklogGate(redis, keys, config.MAX_POOL_BACKLOG),
    directory,
    metrics,
    router: new Router(directory, {
      allowUnpriced: config.ALLOW_UNPRICED_MODELS,
      fallbacks: gateway.fallbacks,
      aliases: gateway.aliases,
      expectedPools: config.EXPECTED_POOLS,
    }),
    async close() {
      directory.stop();
      await lostPools.stop();
      auth.close();
      fastLanes.close();
      await queues.close().catch(() => {});
      await budget.close();
      sub.disconnect();
      redis.disconnect();
      await closeDb();
    },
  };
}
