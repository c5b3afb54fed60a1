import { BUILTIN_MODELS, PRICES_TAKEN_AT } from '@faregate/catalog/models';
import { catalogWithOverrides, type GatewayConfig } from '@faregate/catalog/gateway-config';
import { usdToMicros } from '@faregate/catalog/money';
import { bootstrapCreditKey } from '@faregate/contracts/credits';
import { ensureBootstrapAccount } from '@faregate/db/accounts';
import { findCreditOutcome } from '@faregate/db/credit-commands';
import { runMigrations } from '@faregate/db/migrate';
import { syncPrices } from '@faregate/db/prices';
import { queueCredit } from './credits.ts';
import type { IngressDeps } from './deps.ts';

/**
 * What the ingress does once before it listens: migrate the database, sync the deployment's prices
 * (the catalog with the routing file's overrides), and, with FAREGATE_BOOTSTRAP_KEY, make sure the
 * bootstrap account and key exist and their credit is queued for billing.
 *
 * The credit is money, so billing applies it: a command keyed by the account, queued until billing
 * has recorded its outcome (a restart queues it again at most, and billing applies it once). The
 * key of a credit queued here is kept in `deps.awaitedCredit`: `/readyz` waits for its outcome.
 */
export async function prepareIngress(deps: IngressDeps, gateway: GatewayConfig): Promise<void> {
  const { config, log } = deps;
  await runMigrations(config.DATABASE_URL);
  await syncPrices(deps.db, catalogWithOverrides(BUILTIN_MODELS, gateway), PRICES_TAKEN_AT);
  if (config.FAREGATE_BOOTSTRAP_KEY) {
    const r = await ensureBootstrapAccount(deps.db, { apiKey: config.FAREGATE_BOOTSTRAP_KEY });
    const amountMicros = usdToMicros(config.FAREGATE_BOOTSTRAP_CREDIT_USD);
    const key = bootstrapCreditKey(r.accountId);
    const queued = amountMicros > 0n && !(await findCreditOutcome(deps.db, key));
    if (queued) {
      await queueCredit(deps.redis, deps.keys, {
        key,
        account: r.accountId,
        amountMicros,
        reference: 'bootstrap credit',
      });
      deps.awaitedCredit = key;
    }
    if (r.created || queued)
      log.info(
        { account: r.accountId, creditUsd: config.FAREGATE_BOOTSTRAP_CREDIT_USD, creditQueued: queued },
        r.created
          ? 'bootstrap account created; billing applies its credit'
          : 'bootstrap credit queued for billing',
      );
  }
  if (!config.FAREGATE_ADMIN_TOKEN) log.info('FAREGATE_ADMIN_TOKEN not set: the admin API is disabled');
}
