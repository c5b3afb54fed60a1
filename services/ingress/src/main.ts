import { BUILTIN_MODELS, PRICES_TAKEN_AT } from '@faregate/catalog/models';
import { usdToMicros } from '@faregate/catalog/money';
import { bootstrapCreditKey } from '@faregate/contracts/credits';
import { ensureBootstrapAccount } from '@faregate/db/accounts';
import { findCreditOutcome } from '@faregate/db/credit-commands';
import { runMigrations } from '@faregate/db/migrate';
import { syncPrices } from '@faregate/db/prices';
import { catalogWithOverrides, loadGatewayConfig } from '@faregate/catalog/gateway-config';
import { buildApp } from './app.ts';
import { loadConfig } from './config.ts';
import { createIngressDeps } from './create-deps.ts';
import { queueCredit } from './credits.ts';
import { serve } from './server.ts';

const config = loadConfig(process.env);
const gateway = loadGatewayConfig(config.FAREGATE_CONFIG, process.env);
const deps = await createIngressDeps(config, gateway);
const { log } = deps;

await runMigrations(config.DATABASE_URL);
await syncPrices(deps.db, catalogWithOverrides(BUILTIN_MODELS, gateway), PRICES_TAKEN_AT);
if (config.FAREGATE_BOOTSTRAP_KEY) {
  // The account and key are created here; the credit is money, so billing applies it: a command
  // keyed by the account, queued until billing has recorded its outcome (a restart queues it again
  // at most, and billing applies it once).
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

const app = await buildApp(deps);
await serve(app, { port: config.PORT, host: config.HOST, log, onClose: () => deps.close() });
log.info({ port: config.PORT, pools: deps.directory.providers }, 'ingress listening');
