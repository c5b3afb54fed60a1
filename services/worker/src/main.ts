import { pino } from 'pino';
import { providersFromEnv } from '@faregate/providers/registry';
import { loadConfig } from '@faregate/pool/config';
import { createWorkerService } from './service.ts';

// Composition root: parse the environment once, build the service, start it, stop it on a signal.
const config = loadConfig(process.env);
const log = pino({ level: config.LOG_LEVEL, base: { svc: `worker-${config.WORKER_PROVIDER}` } });
const providerConfig = providersFromEnv(process.env).find((p) => p.id === config.WORKER_PROVIDER);
if (!providerConfig) {
  log.fatal(
    `provider "${config.WORKER_PROVIDER}" is not configured: set its API key / base URL (see .env.example), or FAKE_PROVIDER_URL for the demo fake`,
  );
  process.exit(1);
}
if (providerConfig.fake) {
  log.warn('*************************************************************************************');
  log.warn(
    `* NO API KEY FOR "${providerConfig.id}": this pool talks to the FAKE provider at ${providerConfig.baseUrl}`,
  );
  log.warn('* Answers are synthetic. Set the provider key in .env to use the real provider.');
  log.warn('*************************************************************************************');
}

const service = await createWorkerService(config, providerConfig, log, process.env);
await service.start();

let stopping = false;
const shutdown = async (signal: string) => {
  if (stopping) return;
  stopping = true;
  await service.stop(signal);
  process.exit(0);
};
process.on('SIGTERM', () => void shutdown('SIGTERM'));
process.on('SIGINT', () => void shutdown('SIGINT'));
