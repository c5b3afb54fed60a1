/**
 * `pnpm start`: the whole gateway as local processes, against the Redis and Postgres in REDIS_URL and
 * DATABASE_URL (see .env.example). Order: fake provider (when a provider has no key) and ingress
 * (migrations, demo tenant) → billing and the worker pools. A service that crashes later is restarted
 * with backoff (a killed worker's jobs re-run once their lock lapses). Ctrl-C or SIGTERM stops
 * everything: ingress and workers first (they finish in-flight requests), then billing and the fake.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureDatabase, redactUrl } from './start/database.ts';
import { freePort, reachable, waitForHttp } from './start/net.ts';
import { parseOptions, type StartOptions, USAGE } from './start/options.ts';
import { type Plan, planServices } from './start/plan.ts';
import { type Running, Supervisor } from './start/supervisor.ts';

const root = fileURLToPath(new URL('..', import.meta.url));
const DEMO_KEY = 'fg-demo-key-change-me';

let options: StartOptions;
try {
  options = parseOptions(process.argv.slice(2));
} catch (e) {
  console.error(`${(e as Error).message}\n\n${USAGE}`);
  process.exit(2);
}
if (options.help) {
  console.log(USAGE);
  process.exit(0);
}

// Variables already in the environment win over the file (Node does not overwrite them).
const envFile = options.envFile ?? join(root, '.env');
if (options.envFile !== undefined || existsSync(envFile)) process.loadEnvFile(envFile);
const env = process.env;

const redisUrl = env.REDIS_URL || 'redis://127.0.0.1:6379';
const databaseUrl = env.DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/faregate';
const ingressPort = Number(env.PORT || 8080);
const ingressHost = !env.HOST || env.HOST === '0.0.0.0' || env.HOST === '::' ? '127.0.0.1' : env.HOST;
const ingressUrl = `http://${ingressHost.includes(':') ? `[${ingressHost}]` : ingressHost}:${ingressPort}`;
const ports = new Set<number>([ingressPort]);
let fakePort: number;
let plan: Plan;
try {
  fakePort = env.FAKE_PROVIDER_PORT ? Number(env.FAKE_PROVIDER_PORT) : await freePort(8090, ports);
  plan = planServices(env, options.workers, `http://127.0.0.1:${fakePort}`);
} catch (e) {
  console.error((e as Error).message);
  process.exit(2);
}

/** `worker-openai`, or `worker-openai#2` when the pool runs several processes. */
const workerName = (pool: Plan['pools'][number], i: number) =>
  pool.processes > 1 ? `worker-${pool.id}#${i}` : `worker-${pool.id}`;
const names = ['start', 'ingress', 'billing', 'fake-provider'];
for (const p of plan.pools) for (let i = 1; i <= p.processes; i++) names.push(workerName(p, i));
const sup = new Supervisor({
  root,
  json: options.json,
  color: Boolean(process.stdout.isTTY) && !env.NO_COLOR,
  prefixWidth: Math.max(...names.map((n) => n.length)) + 2,
  killAfterMs: 30_000,
});
const say = (line: string) => sup.print('start', line, 'gray');

let exiting = false;
async function shutdown(reason: string, code: number): Promise<void> {
  if (exiting) return;
  exiting = true;
  say(`stopping (${reason})…`);
  await sup.stop();
  say('stopped');
  process.exit(code);
}
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(signal, () => {
    if (!exiting) return void shutdown(signal, 0);
    say(`${signal} again: killing every service now`);
    sup.killAll();
    process.exit(130);
  });
}
// Whatever happens to this runner, it never leaves services behind.
process.on('exit', () => sup.killAll());

try {
  await run();
} catch (e) {
  sup.print('start', (e as Error).message, 'red', process.stderr);
  await shutdown('failed to start', 1);
}

async function run(): Promise<void> {
  if (!env.FAREGATE_BOOTSTRAP_KEY) env.FAREGATE_BOOTSTRAP_KEY = DEMO_KEY;
  // The web console's files (packages/console/dist), built from its sources on every start (about a
  // second), so the ingress serves what the checkout holds.
  const { buildConsole } = await import('../packages/console/src/build.ts');
  await buildConsole();
  if (!(await reachable(redisUrl)))
    throw new Error(`cannot reach Redis at ${redactUrl(redisUrl)}: set REDIS_URL`);
  try {
    if (await ensureDatabase(databaseUrl)) say(`created database ${redactUrl(databaseUrl)}`);
  } catch (e) {
    throw new Error(
      `cannot use Postgres at ${redactUrl(databaseUrl)} (${(e as Error).message}): set DATABASE_URL`,
    );
  }
  const base: Record<string, string | undefined> = {
    ...env,
    REDIS_URL: redisUrl,
    DATABASE_URL: databaseUrl,
    FAREGATE_CONFIG: env.FAREGATE_CONFIG || join(root, 'faregate.config.json'),
    ...(plan.startFake ? { FAKE_PROVIDER_URL: `http://127.0.0.1:${fakePort}` } : {}),
  };
  // METRICS_PORT (other than 0) moves where the services' metrics ports are looked for: ingress at
  // it, billing one above, workers from two above (default 9090, 9091, 9092…).
  const metricsBase = Number(env.METRICS_PORT) > 0 ? Number(env.METRICS_PORT) : 9090;
  const metricsPort = async (offset: number) =>
    env.METRICS_PORT === '0' ? '0' : String(await freePort(metricsBase + offset, ports));

  const early: Promise<void>[] = [];
  if (plan.startFake) {
    const fake = sup.start({
      name: 'fake-provider',
      script: 'packages/fake-provider/src/main.ts',
      env: { ...base, FAKE_PROVIDER_PORT: String(fakePort) },
      phase: 2,
    });
    early.push(ready(fake, `http://127.0.0.1:${fakePort}/healthz`, 20_000));
  }
  const ingressMetricsPort = await metricsPort(0);
  const ingress = sup.start({
    name: 'ingress',
    script: 'services/ingress/src/main.ts',
    // /readyz waits for these pools; until each registers, its requests get 503 with retry-after.
    env: {
      ...base,
      PORT: String(ingressPort),
      METRICS_PORT: ingressMetricsPort,
      EXPECTED_POOLS: plan.pools.map((p) => p.id).join(','),
      // The ingress runs the pools' interactive requests itself while it has room (local-pools.ts);
      // the workers take what needs the queue. INGRESS_POOLS= (empty) in the environment turns it off.
      INGRESS_POOLS: env.INGRESS_POOLS ?? plan.pools.map((p) => p.id).join(','),
    },
    phase: 1,
  });
  // The ingress listens once it has migrated the database; it is ready once the pools registered.
  early.push(ready(ingress, `${ingressUrl}/healthz`, 60_000));
  await Promise.all(early);

  const billingPort = await metricsPort(1);
  const billing = sup.start({
    name: 'billing',
    script: 'services/billing/src/main.ts',
    env: { ...base, METRICS_PORT: billingPort },
    phase: 2,
  });
  const metrics = [`ingress :${ingressMetricsPort}`, `billing :${billingPort}`];
  for (const pool of plan.pools) {
    for (let i = 1; i <= pool.processes; i++) {
      const name = workerName(pool, i);
      const port = await metricsPort(2);
      sup.start({
        name,
        script: 'services/worker/src/main.ts',
        env: { ...base, WORKER_PROVIDER: pool.id, METRICS_PORT: port },
        phase: 1,
      });
      metrics.push(`${name} :${port}`);
    }
  }
  await Promise.all([
    billingPort === '0' ? undefined : ready(billing, `http://127.0.0.1:${billingPort}/healthz`, 60_000),
    poolsDiscovered(),
  ]);
  summary(metrics);
}

/**
 * A service that exits before it is first ready fails the start instead of being restarted over and
 * over: that is nearly always a configuration error, and its output says which.
 */
function ready(r: Running, url: string, timeoutMs: number): Promise<void> {
  return waitForHttp(url, { timeoutMs, gone: () => r.crashes > 0, what: r.spec.name });
}

/** Waits until the ingress is ready: every pool registered (the workers publish their models once they run). */
async function poolsDiscovered(): Promise<void> {
  const want = plan.pools.map((p) => p.id);
  const end = Date.now() + 60_000;
  let have: string[] = [];
  while (Date.now() < end && !exiting) {
    const r = await fetch(`${ingressUrl}/readyz`, { signal: AbortSignal.timeout(2_000) }).catch(
      () => undefined,
    );
    const body = r
      ? await (r.json() as Promise<{ pools?: string[] }>).catch(() => ({ pools: [] }))
      : { pools: [] };
    have = body.pools ?? [];
    if (r?.ok && want.every((p) => have.includes(p))) return;
    await new Promise((r) => setTimeout(r, 250));
  }
  say(`still waiting for pools: ${want.filter((p) => !have.includes(p)).join(', ')} (see their output)`);
}

function summary(metrics: string[]): void {
  const key = env.FAREGATE_BOOTSTRAP_KEY;
  say('');
  say(
    `Faregate is running: ${ingressUrl}/v1 (OpenAI-compatible), WebSocket ${ingressUrl.replace('http', 'ws')}/v1/stream`,
  );
  say(`pools: ${plan.pools.map((p) => `${p.id}×${p.processes}`).join(', ') || 'none'}`);
  if (plan.fakePools.length > 0)
    say(`FAKE provider (no API key, synthetic answers) serves: ${plan.fakePools.join(', ')}`);
  say(`metrics: ${metrics.join(', ')}`);
  if (env.FAREGATE_ADMIN_TOKEN) say(`web console: ${ingressUrl}/console (sign in with FAREGATE_ADMIN_TOKEN)`);
  if (key === DEMO_KEY) {
    say(`demo API key: ${DEMO_KEY} (set FAREGATE_BOOTSTRAP_KEY in .env for your own)`);
    say(
      `try: curl ${ingressUrl}/v1/chat/completions -H 'authorization: Bearer ${DEMO_KEY}' -H 'content-type: application/json' -d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}'`,
    );
  }
  say('Ctrl-C stops everything.');
}
