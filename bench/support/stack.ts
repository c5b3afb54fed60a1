import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import pg from 'pg';
import { SERVICE_NODE_FLAGS } from '../../scripts/start/node-flags.ts';

/**
 * Launches the whole gateway for a benchmark (not for vitest): the real services as separate
 * processes against the local Redis and Postgres, plus the fake provider in a process of its own,
 * so that the bench client, the fake, the ingress and the workers never share one event loop.
 *
 *   const stack = await startBenchStack({ workers: 2 });
 *   // POST `${stack.url}/v1/chat/completions` with `authorization: Bearer ${stack.apiKey}`
 *   // POST `${stack.fakeUrl}/openai/v1/chat/completions` to bypass the gateway
 *   await stack.stop();
 *
 * Every stack gets a fresh database and a random Redis key prefix (both dropped by stop()). Children are
 * SIGTERMed by stop(), by SIGINT/SIGTERM of this process, and SIGKILLed if this process exits first.
 */

export type ServiceName = 'fake' | 'ingress' | 'worker' | 'billing';

export interface BenchStackOptions {
  /** Provider pools to run, one worker program per pool (default `['openai']`). */
  providers?: string[];
  /** Worker processes per pool (default 1). */
  workers?: number;
  /**
   * Run billing (default true): it competes for the same CPU, as in production. With false it still
   * starts to apply the bootstrap credit, and is stopped before the stack is handed over.
   */
  billing?: boolean;
  /** Extra environment for every service, e.g. `{ WORKER_CONCURRENCY: '128' }`. */
  env?: Record<string, string>;
  /** Extra node flags per service, e.g. `{ ingress: ['--cpu-prof', '--cpu-prof-dir=/tmp/prof'] }`. */
  nodeArgs?: Partial<Record<ServiceName, string[]>>;
  /** Copy every service's output to stderr as it comes (default: kept, shown only on failure). */
  verbose?: boolean;
}

export interface BenchService {
  /** `ingress`, `worker:openai#1`, `billing`, `fake`. */
  name: string;
  pid: number;
}

export interface BenchStack {
  /** Gateway base URL, `http://127.0.0.1:<port>` (OpenAI base URL: `${url}/v1`). */
  url: string;
  /** A key of the bootstrap account, with ample credit. */
  apiKey: string;
  /** Fake provider base URL; OpenAI base URL `${fakeUrl}/openai/v1`, control API `${fakeUrl}/_control`. */
  fakeUrl: string;
  redisUrl: string;
  /** Redis key prefix of this stack (every key and channel it uses starts with it). */
  prefix: string;
  /** The stack's own database (dropped by stop()). */
  databaseUrl: string;
  /** The processes started, e.g. for per-process CPU accounting. */
  services: readonly BenchService[];
  /** Stops every process (gracefully, so `--cpu-prof` files get written) and drops the database. */
  stop(): Promise<void>;
}

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const READY_TIMEOUT_MS = 60_000;
const STOP_GRACE_MS = 10_000;

interface Child {
  name: string;
  proc: ChildProcess;
  output: string[];
  exited: Promise<void>;
}

/** `--env KEY=VALUE` arguments (repeatable) as an environment for every service; throws on a malformed one. */
export function parseEnvArgs(args: readonly string[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const kv of args) {
    const i = kv.indexOf('=');
    if (i < 1) throw new Error(`--env takes KEY=VALUE, got ${JSON.stringify(kv)}`);
    env[kv.slice(0, i)] = kv.slice(i + 1);
  }
  return env;
}

export async function startBenchStack(opts: BenchStackOptions = {}): Promise<BenchStack> {
  const providers = opts.providers ?? ['openai'];
  const workers = opts.workers ?? 1;
  const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
  const adminUrl = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
  const prefix = `bench${randomBytes(4).toString('hex')}`;
  const apiKey = `fg_bench_${randomBytes(12).toString('hex')}`;
  const children: Child[] = [];

  const spawnChild = (name: ServiceName, label: string, script: string, env: Record<string, string>) => {
    // The flags `pnpm start` and the image give every service, then the bench's own.
    const args = [...SERVICE_NODE_FLAGS, ...(opts.nodeArgs?.[name] ?? []), script];
    const proc = spawn(process.execPath, args, {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const child: Child = { name: label, proc, output: [], exited: once(proc, 'exit').then(() => {}) };
    const keep = (b: Buffer) => {
      child.output.push(b.toString());
      if (child.output.length > 200) child.output.shift();
      if (opts.verbose) process.stderr.write(`[${label}] ${b.toString()}`);
    };
    proc.stdout?.on('data', keep);
    proc.stderr?.on('data', keep);
    children.push(child);
    return child;
  };

  const db = await createDatabase(adminUrl);
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      process.off('exit', killAll);
      for (const s of ['SIGINT', 'SIGTERM'] as const) process.off(s, onSignal);
      await Promise.all(children.map((c) => terminate(c)));
      await Promise.all([db.drop(), dropKeys(redisUrl, prefix)]);
    })();
    return stopping;
  };
  // Last resort when this process dies without stop(): no orphaned services left holding ports.
  const killAll = () => {
    for (const c of children)
      if (c.proc.exitCode === null && c.proc.signalCode === null) c.proc.kill('SIGKILL');
  };
  const onSignal = (signal: NodeJS.Signals) => {
    void stop().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
  };
  process.on('exit', killAll);
  for (const s of ['SIGINT', 'SIGTERM'] as const) process.once(s, onSignal);

  const logs = () =>
    children.map(
      (c) => `--- ${c.name} (exit ${c.proc.exitCode ?? c.proc.signalCode}) ---\n${c.output.join('')}`,
    );

  try {
    const fake = spawnChild('fake', 'fake', 'bench/support/fake-process.ts', {});
    const fakeUrl = await fakeUrlOf(fake);
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const base: Record<string, string> = {
      REDIS_URL: redisUrl,
      REDIS_PREFIX: prefix,
      DATABASE_URL: db.url,
      FAKE_PROVIDER_URL: fakeUrl,
      FAREGATE_BOOTSTRAP_KEY: apiKey,
      // Enough that no benchmark run is ever refused for budget.
      FAREGATE_BOOTSTRAP_CREDIT_USD: '1000000',
      LOG_LEVEL: 'warn',
      ...opts.env,
    };

    // The ingress migrates and bootstraps the account; the others start once the schema exists.
    const ingress = spawnChild('ingress', 'ingress', 'services/ingress/src/main.ts', {
      ...base,
      PORT: String(port),
      HOST: '127.0.0.1',
      METRICS_PORT: String(await freePort()),
    });
    // It listens once it has migrated; it is ready once the pools registered and billing applied
    // the bootstrap credit (so the rest starts first).
    await waitFor(`${url}/healthz`, [ingress]);

    const started: Array<Promise<void>> = [];
    for (const provider of providers) {
      for (let i = 1; i <= workers; i++) {
        const metricsPort = await freePort();
        const w = spawnChild('worker', `worker:${provider}#${i}`, 'services/worker/src/main.ts', {
          ...base,
          WORKER_PROVIDER: provider,
          METRICS_PORT: String(metricsPort),
        });
        started.push(waitFor(`http://127.0.0.1:${metricsPort}/healthz`, [w]));
      }
    }
    // Billing always starts: it applies the bootstrap credit, without which every request is refused
    // for budget. With `billing: false` it is stopped once that is done, leaving the request path
    // (and its CPU figures) without it.
    const billingMetricsPort = await freePort();
    const billing = spawnChild('billing', 'billing', 'services/billing/src/main.ts', {
      ...base,
      METRICS_PORT: String(billingMetricsPort),
    });
    started.push(waitFor(`http://127.0.0.1:${billingMetricsPort}/healthz`, [billing]));
    await Promise.all(started);
    // The ingress routes only to pools it has discovered, and is ready once billing applied the credit.
    await waitFor(`${url}/readyz`, children, async (r) => {
      const body = (await r.json()) as { pools?: string[] };
      return providers.every((p) => body.pools?.includes(p));
    });
    if (opts.billing === false) {
      await terminate(billing);
      children.splice(children.indexOf(billing), 1);
    }

    const services = children.map((c) => ({ name: c.name, pid: c.proc.pid ?? 0 }));
    return { url, apiKey, fakeUrl, redisUrl, prefix, databaseUrl: db.url, services, stop };
  } catch (e) {
    const out = logs().join('\n');
    await stop().catch(() => {});
    throw new Error(`bench stack failed to start: ${(e as Error).message}\n${out}`);
  }
}

/** Changes the fake provider's settings (all providers, or one with `provider`), e.g. `{ firstByteMs: 20 }`. */
export async function configureFake(fakeUrl: string, patch: Record<string, unknown>): Promise<void> {
  const r = await fetch(`${fakeUrl}/_control/config`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(patch),
  });
  if (!r.ok) throw new Error(`fake config refused: ${r.status} ${await r.text()}`);
}

/**
 * Removes every key of the stack's prefix. A batch run leaves ~100,000 frame keys for minutes (their
 * TTL): the next run's Redis then carries them (1.8 GB after six back-to-back batch runs), and its
 * figures drift down run after run.
 */
async function dropKeys(redisUrl: string, prefix: string): Promise<void> {
  const redis = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await redis.connect();
    const scan = redis.scanStream({ match: `${prefix}*`, count: 5_000 });
    for await (const keys of scan) if (keys.length > 0) await redis.unlink(...(keys as string[]));
  } catch (e) {
    console.error(`could not remove the stack's Redis keys (${prefix}*): ${(e as Error).message}`);
  } finally {
    redis.disconnect();
  }
}

async function createDatabase(adminUrl: string): Promise<{ url: string; drop: () => Promise<void> }> {
  const name = `fg_bench_${randomBytes(6).toString('hex')}`;
  const admin = async (sql: string) => {
    const c = new pg.Client({ connectionString: adminUrl });
    await c.connect();
    try {
      await c.query(sql);
    } finally {
      await c.end();
    }
  };
  await admin(`CREATE DATABASE ${name}`);
  const u = new URL(adminUrl);
  u.pathname = `/${name}`;
  return { url: u.toString(), drop: () => admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`) };
}

async function terminate(c: Child): Promise<void> {
  if (c.proc.exitCode !== null || c.proc.signalCode !== null) return;
  c.proc.kill('SIGTERM');
  const t = setTimeout(() => c.proc.kill('SIGKILL'), STOP_GRACE_MS);
  await c.exited;
  clearTimeout(t);
}

async function freePort(): Promise<number> {
  const s = createServer();
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

/** The fake announces its URL as a JSON line on stdout once it listens. */
async function fakeUrlOf(fake: Child): Promise<string> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    const line = fake.output.join('').split('\n')[0];
    if (line?.startsWith('{') && fake.output.join('').includes('\n')) {
      return (JSON.parse(line) as { fakeUrl: string }).fakeUrl;
    }
    if (fake.proc.exitCode !== null) throw new Error('fake provider exited');
    if (Date.now() > deadline) throw new Error('fake provider did not start');
    await Promise.race([once(fake.proc.stdout!, 'data'), fake.exited]);
  }
}

/**
 * Polls `url` until it answers 2xx (and `accept` agrees), failing fast when a watched process exits.
 * Polling is fine here: this is start-up, not a measured path.
 */
async function waitFor(
  url: string,
  watch: Child[],
  accept: (r: Response) => Promise<boolean> = async () => true,
): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    const dead = watch.find((c) => c.proc.exitCode !== null || c.proc.signalCode !== null);
    if (dead) throw new Error(`${dead.name} exited while waiting for ${url}`);
    const r = await fetch(url).catch(() => undefined);
    if (r?.ok && (await accept(r))) return;
    await r?.body?.cancel().catch(() => {});
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${url}`);
    await new Promise((res) => setTimeout(res, 50));
  }
}
