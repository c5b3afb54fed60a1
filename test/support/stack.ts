import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { startFakeProvider, type FakeProvider } from '@faregate/fake-provider/server';
import { freshDatabase, testRedis, until } from '@faregate/testing/env';

const root = fileURLToPath(new URL('../..', import.meta.url));

/** Ports handed out by this test process (never twice). */
const handedOut = new Set<number>();

/** At most this many vitest workers (vitest.config.ts runs 2): each gets its own band of ports. */
const BANDS = 4;
const BAND_SIZE = 12_000 / BANDS;
/** This process's band: from `VITEST_POOL_ID` (1 to maxWorkers), the slot vitest runs it in. */
const poolId = Math.max(1, Number(process.env.VITEST_POOL_ID) || 1);
if (poolId > BANDS)
  throw new Error(`test ports: ${BANDS} bands for at most ${BANDS} vitest workers, this is worker ${poolId}`);
const band = poolId - 1;

/**
 * A port for a service to listen on: random in this process's band of 20,000–31,999 and free when
 * probed (on every interface: services bind either). Below the kernel's ephemeral range (32768 up)
 * on purpose: a port from there (what `listen(0)` gives) can be taken, between the probe and the
 * service's bind, as the local port of any outgoing connection on the machine, and was (EADDRINUSE
 * in CI). One band per vitest worker: a port is free when probed but bound only once the service
 * has started, seconds later, and two test processes drawing from one range handed the same port to
 * two stacks (CI: one stack's ingress could not bind, and every request of its tests reached the
 * other stack's ingress, which knew neither its key nor its admin token).
 */
export async function freePort(): Promise<number> {
  for (let tries = 0; tries < 200; tries++) {
    const port = 20_000 + band * BAND_SIZE + Math.floor(Math.random() * BAND_SIZE);
    if (handedOut.has(port)) continue;
    const s = createServer();
    // One promise for both outcomes: `once(s, 'listening')` rejects on 'error', so racing it against
    // `once(s, 'error')` threw the EADDRINUSE of a port something else held (CI: RabbitMQ's 25672).
    const ok = await new Promise<boolean>((resolve) => {
      s.once('listening', () => resolve(true));
      s.once('error', () => resolve(false));
      s.listen(port);
    });
    if (ok) await new Promise<void>((r) => s.close(() => r()));
    if (!ok) continue;
    handedOut.add(port);
    return port;
  }
  throw new Error(
    `no free port found in ${20_000 + band * BAND_SIZE}-${20_000 + (band + 1) * BAND_SIZE - 1}`,
  );
}

export interface Service {
  name: string;
  proc: ChildProcess;
  output: string[];
}

export interface Stack {
  url: string;
  apiKey: string;
  adminToken: string;
  fake: FakeProvider;
  databaseUrl: string;
  redisUrl: string;
  prefix: string;
  sql: pg.Pool;
  services: Service[];
  /** Starts one more process of a service (e.g. a second worker of a pool). */
  start(name: string, extraEnv?: Record<string, string>): Promise<Service>;
  logs(): string;
  stop(): Promise<void>;
}

export interface StackOptions {
  providers?: string[];
  env?: Record<string, string>;
  /** More environment for the ingress only (e.g. its METRICS_PORT). */
  ingressEnv?: Record<string, string>;
  billing?: boolean;
  /** Wait for `/readyz` and every pool (default). Off: return once the services started. */
  waitReady?: boolean;
  /** A Redis of the test's own (e.g. one it restarts) instead of the shared one. */
  redisUrl?: string;
  /** Rewrites the stack's database URL for the services (e.g. through a TcpProxy a test cuts). */
  databaseUrl?: (url: string) => Promise<string>;
}

/**
 * The real services as separate processes (`node services/<x>/src/main.ts`) against real Redis
 * and Postgres, with the fake provider as the only fake. Each stack gets its own database and
 * Redis key prefix, so stacks never see each other.
 */
export async function startStack(opts: StackOptions = {}): Promise<Stack> {
  const providers = opts.providers ?? ['openai'];
  const shared = testRedis();
  const redisUrl = opts.redisUrl ?? shared.url;
  const { prefix } = shared;
  const db = await freshDatabase();
  const servicesDbUrl = opts.databaseUrl ? await opts.databaseUrl(db.url) : db.url;
  const fake = await startFakeProvider({ port: 0, host: '127.0.0.1' });
  const port = await freePort();
  const apiKey = `fg_test_${prefix}_key_0123456789`;
  const adminToken = `admin_${prefix}_0123456789abcdef`;
  const baseEnv: Record<string, string> = {
    PATH: process.env.PATH ?? '',
    REDIS_URL: redisUrl,
    REDIS_PREFIX: prefix,
    DATABASE_URL: servicesDbUrl,
    FAKE_PROVIDER_URL: fake.url,
    FAREGATE_BOOTSTRAP_KEY: apiKey,
    FAREGATE_BOOTSTRAP_CREDIT_USD: '100',
    FAREGATE_ADMIN_TOKEN: adminToken,
    METRICS_PORT: '0',
    LOG_LEVEL: 'warn',
    PORT: String(port),
    HOST: '127.0.0.1',
    DISCOVERY_INTERVAL_MS: '2000',
    DIRECTORY_REFRESH_MS: '300',
    ...opts.env,
  };
  const services: Service[] = [];
  const start = async (name: string, extraEnv: Record<string, string> = {}): Promise<Service> => {
    const [svc, provider] = name.split(':');
    const env = { ...baseEnv, ...extraEnv, ...(provider ? { WORKER_PROVIDER: provider } : {}) };
    const proc = spawn(process.execPath, [`services/${svc}/src/main.ts`], {
      cwd: root,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const s: Service = { name, proc, output: [] };
    const keep = (b: Buffer) => {
      s.output.push(b.toString());
      if (s.output.length > 500) s.output.shift();
    };
    proc.stdout?.on('data', keep);
    proc.stderr?.on('data', keep);
    services.push(s);
    return s;
  };
  const url = `http://127.0.0.1:${port}`;
  const sql = new pg.Pool({ connectionString: db.url, max: 3 });
  // Dropping the database at the end terminates connections still closing: not a test failure.
  sql.on('error', () => {});
  const logs = () =>
    services.map((s) => `--- ${s.name} (exit ${s.proc.exitCode}) ---\n${s.output.join('')}`).join('\n');
  const stop = async () => {
    await Promise.all(
      services.map(async (s) => {
        if (s.proc.exitCode !== null || s.proc.signalCode !== null) return;
        s.proc.kill('SIGTERM');
        const t = setTimeout(() => s.proc.kill('SIGKILL'), 5000);
        await once(s.proc, 'exit');
        clearTimeout(t);
      }),
    );
    await sql.end();
    await fake.close();
    await db.drop();
  };
  try {
    // The ingress migrates and bootstraps; the others start once the schema exists.
    const ingress = await start('ingress', opts.ingressEnv);
    // It listens once it has migrated (it is ready only once the expected pools registered). What
    // answers must be this stack's ingress (it knows this stack's key), not a process of another
    // stack that holds the port: that would pass every readiness check and fail every test with 401.
    const listening = await until(
      async () => {
        if (ingress.proc.exitCode !== null || ingress.proc.signalCode !== null)
          return `the ingress exited (${ingress.proc.exitCode ?? ingress.proc.signalCode})`;
        const r = await fetch(`${url}/v1/models`, { headers: { authorization: `Bearer ${apiKey}` } }).catch(
          () => undefined,
        );
        if (r?.status === 401) return `${url} is another stack's ingress: it refuses this stack's key`;
        return r?.ok && 'ok';
      },
      { timeoutMs: 60_000, what: 'ingress /v1/models with the stack key' },
    );
    if (listening !== 'ok') throw new Error(listening);
    for (const p of providers) await start(`worker:${p}`);
    if (opts.billing !== false) await start('billing');
    if (opts.waitReady !== false)
      await until(
        async () => {
          const r = await fetch(`${url}/readyz`);
          const body = (await r.json()) as { pools: string[] };
          return r.ok && providers.every((p) => body.pools.includes(p));
        },
        { timeoutMs: 60_000, what: `ingress ready, pools ${providers.join(', ')} discovered` },
      );
    // The bootstrap credit is a command billing applies once it runs: the stack is ready when it has.
    if (opts.billing !== false && Number(baseEnv.FAREGATE_BOOTSTRAP_CREDIT_USD) > 0) {
      const applied = `SELECT 1 FROM credit_commands WHERE idempotency_key LIKE 'bootstrap:%' AND status = 'applied'`;
      await until(async () => ((await sql.query(applied)).rowCount ?? 0) > 0, {
        timeoutMs: 60_000,
        what: 'bootstrap credit applied by billing',
      });
    }
  } catch (e) {
    const out = logs();
    await stop().catch(() => {});
    throw new Error(`${(e as Error).message}\n${out}`);
  }
  return {
    url,
    apiKey,
    adminToken,
    fake,
    databaseUrl: db.url,
    redisUrl,
    prefix,
    sql,
    services,
    start,
    logs,
    stop,
  };
}
