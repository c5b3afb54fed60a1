import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { collectProcessMetrics } from '@faregate/observability/process-metrics';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { GatewayError } from '@faregate/contracts/errors';
import { SERVED_HEADERS } from '@faregate/contracts/route';
import { mergeExposition } from '@faregate/observability/metrics-server';
import type { RedisClient } from '@faregate/queue/redis';
import { poolBacklog } from '@faregate/queue/backlog';
import type { Keys } from '@faregate/queue/keys';
import type { ProviderQueues } from '@faregate/queue/queues';

/** Seconds: from 1 ms (a replay, a refusal) to a long generation. */
const BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

/**
 * What the ingress tells Prometheus: every request by route (the matched route's template, never the
 * raw URL), method, status and the model that served it (`provider/model`, from the served headers;
 * empty when no provider answered), time to the first streamed chunk, open WebSockets, and requests
 * refused by reason (the error code: budget, rate limits, overload, a pool not ready…).
 */
export function createIngressMetrics() {
  const registry = new Registry();
  registry.setDefaultLabels({ service: 'ingress' });
  collectProcessMetrics(registry);
  return {
    registry,
    requests: new Counter({
      name: 'faregate_ingress_requests_total',
      help: 'HTTP requests answered, by route, method, status and serving model',
      labelNames: ['route', 'method', 'status', 'model'],
      registers: [registry],
    }),
    duration: new Histogram({
      name: 'faregate_ingress_request_duration_seconds',
      help: 'Time from the request to the end of its answer (a stream: its last byte), by route, status and model',
      labelNames: ['route', 'status', 'model'],
      buckets: BUCKETS,
      registers: [registry],
    }),
    ttft: new Histogram({
      name: 'faregate_ingress_ttft_seconds',
      help: 'Time from the request to its first streamed chunk, by route and model',
      labelNames: ['route', 'model'],
      buckets: BUCKETS,
      registers: [registry],
    }),
    websockets: new Gauge({
      name: 'faregate_ingress_websocket_connections',
      help: 'Open WebSocket connections',
      registers: [registry],
    }),
    lostPoolMoves: new Counter({
      name: 'faregate_ingress_lost_pool_moves_total',
      help: 'Queued jobs moved off a pool with no live worker to their next live hop, by pool left and pool reached',
      labelNames: ['from', 'to'],
      registers: [registry],
    }),
    refusals: new Counter({
      name: 'faregate_ingress_refusals_total',
      help: 'Requests answered with an error, by reason (the error code) and status',
      labelNames: ['reason', 'status'],
      registers: [registry],
    }),
  };
}
export type IngressMetrics = ReturnType<typeof createIngressMetrics>;

declare module 'fastify' {
  interface FastifyInstance {
    metrics?: IngressMetrics;
  }
  interface FastifyRequest {
    /** The model serving a streamed answer (its headers went out on the raw socket). */
    servedModel?: string;
  }
}

const routeOf = (req: FastifyRequest) => (req.is404 ? 'unmatched' : (req.routeOptions.url ?? 'unmatched'));

/**
 * Observes every request. Register before any other hook: a request refused by the auth hook is
 * counted too, and a hijacked reply (SSE) is measured when its socket finishes.
 */
export function registerMetrics(app: FastifyInstance, metrics: IngressMetrics): void {
  app.decorate('metrics', metrics);
  app.addHook('onRequest', (req, reply, done) => {
    const start = performance.now();
    reply.raw.once('close', () => {
      const route = routeOf(req);
      const status = String(reply.raw.statusCode);
      const served = reply.getHeader(SERVED_HEADERS.model);
      const model = req.servedModel ?? (typeof served === 'string' ? served : '');
      metrics.requests.inc({ route, method: req.method, status, model });
      metrics.duration.observe({ route, status, model }, (performance.now() - start) / 1000);
    });
    done();
  });
  app.addHook('onError', (_req, _reply, err, done) => {
    if (err instanceof GatewayError) metrics.refusals.inc({ reason: err.code, status: String(err.status) });
    done();
  });
}

/** A streamed answer's first chunk is going out (served by `model`): time to first token. */
export function markFirstChunk(reply: FastifyReply, model: string): void {
  const req = reply.request;
  req.servedModel = model;
  reply.server.metrics?.ttft.observe({ route: routeOf(req), model }, reply.elapsedTime / 1000);
}

/**
 * BullMQ's own queue metrics (`bullmq_job_count` by state, completed and failed totals) for each
 * pool the ingress routes to, labelled with the pool, merged into one exposition.
 */
export async function queueMetrics(queues: ProviderQueues, pools: readonly string[]): Promise<string> {
  const texts = await Promise.all(pools.map((pool) => queues.get(pool).exportPrometheusMetrics({ pool })));
  return mergeExposition(texts);
}

const label = (v: string) => v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');

/**
 * `faregate_pool_backlog{pool}`: the figure KEDA scales each pool's workers on (the Helm chart's
 * ScaledObjects), read from Redis at scrape time (packages/queue/src/backlog.ts): BullMQ's waiting,
 * prioritized, due delayed and active jobs plus the fast lane's entries and runs. Every ingress
 * serves the same figure.
 */
export async function backlogMetrics(
  redis: RedisClient,
  keys: Keys,
  pools: readonly string[],
): Promise<string> {
  const backlogs = await Promise.all(pools.map((pool) => poolBacklog(redis, keys, pool)));
  return [
    '# HELP faregate_pool_backlog Jobs of the pool waiting, prioritized, delayed and due, in its fast lane, or running',
    '# TYPE faregate_pool_backlog gauge',
    ...pools.map((pool, i) => `faregate_pool_backlog{pool="${label(pool)}"} ${backlogs[i]?.total ?? 0}`),
  ].join('\n');
}

/** Everything per pool the ingress's /metrics adds to its registry: BullMQ's queue metrics and the backlog. */
export async function poolMetrics(
  deps: { queues: ProviderQueues; redis: RedisClient; keys: Keys },
  pools: readonly string[],
): Promise<string> {
  return mergeExposition(
    await Promise.all([queueMetrics(deps.queues, pools), backlogMetrics(deps.redis, deps.keys, pools)]),
  );
}
