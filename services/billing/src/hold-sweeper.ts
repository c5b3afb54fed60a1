import type { Db } from '@faregate/db/client';
import { expireHolds, overdrawn, sweepGivebacks } from '@faregate/db/holds';
import { expireIdempotencyKeys } from '@faregate/db/idempotency-keys';
import type { Logger } from 'pino';
import type { BillingMetrics } from './metrics.ts';

/**
 * Periodically deletes expired admission holds (requests lost before settling), give-back
 * records a day old (holds.ts `shrinkHold`) and expired `Idempotency-Key` ids (idempotency-keys.ts). Expired holds already stop counting against the
 * balance; the sweep keeps the tables small. Safe on every replica. It also reports the tenants
 * whose balance settlement took below zero (`billing_tenants_overdrawn`): holds keep a balance
 * from going negative unless a provider bills past a request's caps, which deserves an alert.
 */
export function startHoldSweeper(deps: { db: Db; metrics: BillingMetrics; log: Logger }, everyMs: number) {
  let running: Promise<void> | undefined;
  const tick = () => {
    if (running) return;
    const swept = Promise.all([expireHolds(deps.db), sweepGivebacks(deps.db), expireIdempotencyKeys(deps.db)])
      .then(([n]) => {
        if (n > 0) {
          deps.metrics.holdsExpired.inc(n);
          deps.log.info({ count: n }, 'expired admission holds removed');
        }
      })
      .catch((err) => deps.log.warn({ err }, 'hold sweep failed'));
    // Every replica reports the same figure (alert on its max, not its sum).
    const reported = overdrawn(deps.db)
      .then((over) => {
        deps.metrics.overdrawn.set(over.accounts);
        deps.metrics.overdrawnMicros.set(Number(over.micros));
        if (over.accounts > 0)
          deps.log.warn(
            { accounts: over.accounts, micros: over.micros.toString() },
            'tenant balances below zero: a provider billed more than requests allowed',
          );
      })
      .catch((err) => deps.log.warn({ err }, 'overdrawn balances could not be read'));
    running = Promise.all([swept, reported])
      .then(() => {})
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
