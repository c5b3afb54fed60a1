import { BUILTIN_MODELS, PRICES_TAKEN_AT } from '@faregate/catalog/models';
import { usdToMicros } from '@faregate/catalog/money';
import { ensureBootstrapAccount } from '@faregate/db/accounts';
import { runMigrations } from '@faregate/db/migrate';
import { syncPrices } from '@faregate/db/prices';
import { catalogWithOverrides, loadGatewayConfig } from '@faregate/catalog/gateway-config';
import { buildApp } from './app.ts';
import { loadConfig } from './config.ts';
import { createIngressDeps } from './create-deps.ts';
import { serve } from './server.ts';

const config = loadConfig(process.env);
const gateway = loadGatewayConfig(config.FAREGATE_CONFIG, process.env);
const deps = await createIngressDeps(config, gateway);
const { log } = deps;

await runMigrations(config.DATABASE_URL);
await syncPrices(deps.db, catalogWithOverrides(BUILTIN_MODELS, gateway), PRICES_TAKEN_AT);
if (config.FAREGATE_BOOTSTRAP_KEY) {
  const r = await ensureBootstrapAccount(deps.db, {
    apiKey: config.FAREGATE_BOOTSTRAP_KEY,
    creditMicros: usdToMicros(config.FAREGATE_BOOTSTRAP_CREDIT_USD),
  });
  if (r.created)
    log.info(
      { account: r.accountId, creditUsd: config.FAREGATE_BOOTSTRAP_CREDIT_USD },
      'bootstrap account created',
    );
}
if (!config.FAREGATE_ADMIN_TOKEN) log.info('FAREGATE_ADMIN_TOKEN not set: the admin API is disabled');

const app = await buildApp(deps);
await serve(app, { port: config.PORT, host: config.HOST, log, onClose: () => deps.close() });
log.info({ port: config.PORT, pools: deps.directory.providers }, 'ingress listening');
