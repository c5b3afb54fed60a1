import { startFakeProvider } from './server.ts';

/** Standalone fake provider (docker compose demo, benchmarks): `node packages/fake-provider/src/main.ts`. */
const rawPort = process.env.FAKE_PROVIDER_PORT ?? '8090';
const port = Number(rawPort);
if (!Number.isInteger(port) || port < 0 || port > 65_535) {
  console.error(`FAKE_PROVIDER_PORT must be a port number, got ${JSON.stringify(rawPort)}`);
  process.exit(1);
}

const fake = await startFakeProvider({ port, host: '0.0.0.0' });
console.log(
  `fake-provider listening on :${fake.port} (openai /openai/v1, anthropic /anthropic, gemini /gemini, llama /llama/v1, control /_control)`,
);

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    fake.close().then(() => process.exit(0));
  });
}
