import type { Db } from '@faregate/db/client';
import { expireHolds, sweepGivebacks } from '@faregate/db/holds';
import type { Logger } from 'pino';
import type { BillingMetrics } from './metrics.ts';

/**
 * Periodically deletes expired admission holds (requests lost before settling) and give-back
 * records a day old (holds.ts `shrinkHold`). Expired holds already stop counting against the
 * balance; the sweep keeps the tables small. Safe on every replica.
 */
export function startHoldSweeper(deps: { db: Db; metrics: BillingMetrics; log: Logger }, everyMs: number) {
  let running: Promise<void> | undefined;
  const tick = () => {
    if (running) return;
    running = Promise.all([expireHolds(deps.db), sweepGivebacks(deps.db)])
      .then(([n]) => {
        if (n > 0) {
          deps.metrics.holdsExpired.inc(n);
          deps.log.info({ count: n }, 'expired admission holds removed');
        }
      })
      .catch((err) => deps.log.warn({ err }, 'hold sweep failed'))
      .finally(() => {
        running = undefined;
      });
  };
  const timer = setInterval(tick, everyMs);
  timer.unref();
  tick();
  return {
    async stop() {
      clearInterval(timer);
      await running;
    },
  };
}
