import { collectProcessMetrics } from '@faregate/observability/process-metrics';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

/**
 * The pool's metrics. `process: false` (a pool hosted by an ingress, whose process metrics the
 * ingress already reports) leaves out the process's own (CPU, memory, event loop).
 */
export function createWorkerMetrics(provider: string, opts: { process?: boolean } = {}) {
  const registry = new Registry();
  registry.setDefaultLabels({ provider });
  if (opts.process !== false) collectProcessMetrics(registry);
  const buckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
  return {
    registry,
    requests: new Counter({
      name: 'faregate_worker_requests_total',
      help: 'Jobs ended, by outcome',
      labelNames: ['outcome'],
      registers: [registry],
    }),
    retries: new Counter({
      name: 'faregate_worker_retries_total',
      help: 'Retried attempts, by error code',
      labelNames: ['code'],
      registers: [registry],
    }),
    fallbacks: new Counter({
      name: 'faregate_worker_fallbacks_total',
      help: 'Jobs handed to the next provider',
      labelNames: ['to'],
      registers: [registry],
    }),
    rateLimitWaits: new Counter({
      name: 'faregate_worker_rate_limit_waits_total',
      help: 'Pool-wide waits for a rate limit (our limit, or learned from provider headers)',
      labelNames: ['reason'],
      registers: [registry],
    }),
    fastLane: new Counter({
      name: 'faregate_worker_fast_lane_total',
      help: 'Fast-lane events: run (popped, or handed over in process by a hosting ingress, and run), queued_due / queued_run / queued_moving (swept to BullMQ: not taken in the grace, lease lapsed, hand-over cut short), handed_over (retry or 429 wait on BullMQ), lost (swept before the run took it)',
      labelNames: ['event'],
      registers: [registry],
    }),
    upstream429: new Counter({
      name: 'faregate_upstream_429_total',
      help: '429 answers from the provider',
      registers: [registry],
    }),
    circuitOpen: new Gauge({
      name: 'faregate_circuit_open',
      help: '1 while the provider circuit is open or half-open (as last seen by this process)',
      registers: [registry],
    }),
    queueDepth: new Gauge({
      name: 'faregate_queue_depth',
      help: "Jobs by state in this pool's queue",
      labelNames: ['state'],
      registers: [registry],
    }),
    limit: new Gauge({
      name: 'faregate_limit',
      help: 'Limits in force',
      labelNames: ['limit'],
      registers: [registry],
    }),
    inFlight: new Gauge({
      name: 'faregate_worker_in_flight',
      help: 'Provider calls in flight in this process',
      registers: [registry],
    }),
    upstreamLatency: new Histogram({
      name: 'faregate_upstream_latency_seconds',
      help: 'Provider call duration',
      buckets,
      registers: [registry],
    }),
    ttft: new Histogram({
      name: 'faregate_upstream_ttft_seconds',
      help: 'Provider time to first token',
      buckets,
      registers: [registry],
    }),
  };
}
export type WorkerMetrics = ReturnType<typeof createWorkerMetrics>;
