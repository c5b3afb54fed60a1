import { collectDefaultMetrics, type Registry } from 'prom-client';

/**
 * How often the event-loop delay histogram samples (ms). prom-client's default is 10: a timer that
 * wakes the process a hundred times a second even when it has nothing to do, which on a small VM
 * was most of an idle gateway's CPU (six processes, each woken ~120 times a second). Delays are
 * still measured to the nanosecond; they are sampled ten times a second.
 */
export const EVENT_LOOP_SAMPLE_MS = 100;

/** The process metrics every service exports (CPU, memory, GC, event-loop delay, handles). */
export function collectProcessMetrics(registry: Registry): void {
  collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS });
}
