import { collectProcessMetrics } from '@faregate/observability/process-metrics';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

export interface BillingMetrics {
  registry: Registry;
  settled: Counter<'result'>;
  malformed: Counter;
  deadLettered: Counter;
  unpriced: Counter<'provider' | 'model'>;
  costMicros: Counter<'provider'>;
  correctedMicros: Counter<'provider' | 'direction'>;
  rerunMicros: Counter<'provider'>;
  batchSeconds: Histogram;
  batchErrors: Counter<'kind'>;
  pending: Gauge;
  backlog: Gauge;
  oldestAgeSeconds: Gauge;
  holdsExpired: Counter;
  overdrawn: Gauge;
  overdrawnMicros: Gauge;
  credits: Counter<'result'>;
}

/**
 * Billing's Prometheus metrics on their own registry (no global default registry), with the process
 * metrics every service exports (event-loop lag, memory, CPU), labelled `service="billing"`.
 */
export function createMetrics(): BillingMetrics {
  const registry = new Registry();
  registry.setDefaultLabels({ service: 'billing' });
  collectProcessMetrics(registry);
  const r = [registry];
  return {
    registry,
    settled: new Counter({
      name: 'billing_usage_events_total',
      help: "Usage events processed, by result (settled = first delivery, duplicate = no-op, corrected = a call's own usage replacing the estimate settled for it at a different cost, rerun = the final event of a request already settled: a run Redis lost the end of, recorded in rerun_calls, not charged)",
      labelNames: ['result'],
      registers: r,
    }),
    malformed: new Counter({
      name: 'billing_usage_malformed_total',
      help: 'Stream entries that failed validation (acked and dead-lettered, never settled)',
      registers: r,
    }),
    deadLettered: new Counter({
      name: 'billing_usage_dead_lettered_total',
      help: 'Valid events Postgres refused individually (moved to the dead-letter stream)',
      registers: r,
    }),
    unpriced: new Counter({
      name: 'billing_usage_unpriced_total',
      help: 'Events for models without a price (recorded at cost 0)',
      labelNames: ['provider', 'model'],
      registers: r,
    }),
    costMicros: new Counter({
      name: 'billing_settled_cost_micro_usd_total',
      help: 'Settled cost in micro-USD, by provider',
      labelNames: ['provider'],
      registers: r,
    }),
    correctedMicros: new Counter({
      name: 'billing_corrected_cost_micro_usd_total',
      help: "Cost moved by corrections (an estimate replaced by the call's own usage), in micro-USD, by provider and direction (up: the call cost more than estimated)",
      labelNames: ['provider', 'direction'],
      registers: r,
    }),
    rerunMicros: new Counter({
      name: 'billing_rerun_cost_micro_usd_total',
      help: 'Cost of calls made for requests that had ended (Redis lost the writes that ended them): paid to the provider, charged to no one (rerun_calls), in micro-USD, by provider',
      labelNames: ['provider'],
      registers: r,
    }),
    batchSeconds: new Histogram({
      name: 'billing_settle_batch_seconds',
      help: 'Time to settle one batch in Postgres',
      buckets: [0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: r,
    }),
    batchErrors: new Counter({
      name: 'billing_settle_errors_total',
      help: 'Failed settlement attempts, by kind (transient = retried with backoff)',
      labelNames: ['kind'],
      registers: r,
    }),
    pending: new Gauge({
      name: 'billing_usage_pending',
      help: 'Events delivered to a billing consumer and not yet acknowledged',
      registers: r,
    }),
    backlog: new Gauge({
      name: 'billing_usage_backlog',
      help: 'Events in the stream not yet delivered to any billing consumer',
      registers: r,
    }),
    oldestAgeSeconds: new Gauge({
      name: 'billing_usage_oldest_unsettled_age_seconds',
      help: 'Age of the oldest unsettled usage event (0 when none): the settlement lag',
      registers: r,
    }),
    holdsExpired: new Counter({
      name: 'billing_holds_expired_total',
      help: 'Admission holds removed after expiry (requests that never settled)',
      registers: r,
    }),
    overdrawn: new Gauge({
      name: 'billing_tenants_overdrawn',
      help: 'Tenant accounts whose balance is below zero (settled past their holds: a provider billed more than the request allowed), as of the last hold sweep',
      registers: r,
    }),
    overdrawnMicros: new Gauge({
      name: 'billing_overdrawn_micro_usd',
      help: 'How far below zero those balances are, summed, in micro-USD (as of the last hold sweep)',
      registers: r,
    }),
    credits: new Counter({
      name: 'billing_credit_commands_total',
      help: 'Credit commands executed, by result (applied, refused, duplicate = no-op, malformed, dead_lettered)',
      labelNames: ['result'],
      registers: r,
    }),
  };
}
