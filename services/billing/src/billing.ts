import { CreditConsumer } from './credit-consumer.ts';
import { UsageConsumer } from './consumer.ts';
import type { BillingDeps } from './create-deps.ts';
import { startHoldSweeper } from './hold-sweeper.ts';

export interface Billing {
  usage: UsageConsumer;
  credits: CreditConsumer;
  /**
   * Loads prices, then starts reading both streams, sweeping holds and refreshing prices. Resolves
   * once the credits queued while billing was away are applied (the bootstrap credit among them),
   * so a healthy billing means a funded bootstrap account.
   */
  start(): Promise<void>;
  /** Finishes the batches in hand and stops; unacked entries stay pending for the next start. */
  stop(): Promise<void>;
  /** For /healthz: false once stopping. */
  healthy(): boolean;
}

/** The billing service over its deps: settles usage events and executes credit commands. */
export function createBilling(deps: BillingDeps): Billing {
  const { config, book, log } = deps;
  const usage = new UsageConsumer(deps, {
    consumer: config.BILLING_CONSUMER,
    batchSize: config.BILLING_BATCH_SIZE,
    batchMs: config.BILLING_BATCH_MS,
    claimIdleMs: config.BILLING_CLAIM_IDLE_MS,
    backoffMaxMs: config.BILLING_BACKOFF_MAX_MS,
  });
  const credits = new CreditConsumer(deps, {
    consumer: config.BILLING_CONSUMER,
    claimIdleMs: config.BILLING_CLAIM_IDLE_MS,
    backoffMaxMs: config.BILLING_BACKOFF_MAX_MS,
  });
  let sweeper: ReturnType<typeof startHoldSweeper> | undefined;
  let priceRefresh: NodeJS.Timeout | undefined;
  return {
    usage,
    credits,
    async start() {
      await book.load();
      await usage.start();
      await credits.start();
      await credits.caughtUp();
      sweeper = startHoldSweeper(deps, config.BILLING_HOLD_SWEEP_MS);
      priceRefresh = setInterval(
        () => book.load().catch((err) => log.warn({ err }, 'price reload failed')),
        60_000,
      );
      priceRefresh.unref();
    },
    async stop() {
      clearInterval(priceRefresh);
      await Promise.all([usage.stop(), credits.stop()]);
      await sweeper?.stop();
    },
    healthy: () => !usage.stopping && !credits.stopping,
  };
}
