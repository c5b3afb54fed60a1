import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { closeSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import pg from 'pg';

/**
 * The gateway as users run it, for the soak and the overload run: `node scripts/start.ts` with the
 * shipped faregate.config.json (its supervisor restarts a crashed service), on a redis-server of its
 * own (AOF, noeviction: docker-compose.yml's settings; its memory is the gateway's alone) and a
 * fresh database of the local Postgres, the fake provider in a process of its own.
 */

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const READY_TIMEOUT_MS = 120_000;

export interface Proc {
  name: string;
  proc: ChildProcess;
  log: string;
  exited: Promise<void>;
}

export interface UserGateway {
  url: string;
  apiKey: string;
  fakeUrl: string;
  redisUrl: string;
  databaseUrl: string;
  /** Where every process writes its output. */
  logDir: string;
  /** The supervisor (`scripts/start.ts`). */
  faregate: Proc;
  /** Every process of the gateway now (start.ts's children, read again each call: restarts change pids). */
  services(): Array<{ name: string; pid: number; metricsPort?: number }>;
  /** The fake provider and the redis-server (not the gateway's, but on the same box). */
  others(): Array<{ name: string; pid: number }>;
  stop(): Promise<void>;
}

export async function freePort(): Promise<number> {
  const s = createServer();
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

const alive = (p: Proc) => p.proc.exitCode === null && p.proc.signalCode === null;
export const tail = (p: Proc, lines = 30): string => {
  try {
    return readFileSync(p.log, 'utf8').split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
};

async function waitHttp(url: string, watch: Proc, accept: (r: Response) => boolean = (r) => r.ok) {
  const end = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    if (!alive(watch)) throw new Error(`${watch.name} exited while waiting for ${url}:\n${tail(watch)}`);
    const r = await fetch(url, { signal: AbortSignal.timeout(2_000) }).catch(() => undefined);
    await r?.body?.cancel().catch(() => {});
    if (r && accept(r)) return;
    if (Date.now() > end) throw new Error(`timed out waiting for ${url}:\n${tail(watch)}`);
    await new Promise((res) => setTimeout(res, 200));
  }
}

/** start.ts's children, named from their command line (and pool), with their METRICS_PORT. */
function childrenOf(pid: number): Array<{ name: string; pid: number; metricsPort?: number }> {
  const pids: number[] = [];
  try {
    for (const t of readdirSync(`/proc/${pid}/task`)) {
      const text = readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8').trim();
      if (text) pids.push(...text.split(/\s+/).map(Number));
    }
  } catch {
    return [];
  }
  const out: Array<{ name: string; pid: number; metricsPort?: number }> = [];
  for (const child of pids.sort((a, b) => a - b)) {
    try {
      const cmd = readFileSync(`/proc/${child}/cmdline`, 'utf8').split('\0');
      const script = cmd.find((a) => a.endsWith('.ts')) ?? cmd[0] ?? '?';
      const svc = /services\/([^/]+)\/src\/main\.ts$/.exec(script)?.[1] ?? script;
      const env = readFileSync(`/proc/${child}/environ`, 'utf8').split('\0');
      const get = (k: string) => env.find((e) => e.startsWith(`${k}=`))?.slice(k.length + 1);
      let name = svc === 'worker' ? `worker-${get('WORKER_PROVIDER') ?? '?'}` : svc;
      for (let i = 2; out.some((o) => o.name === name); i++) name = `${name.replace(/#\d+$/, '')}#${i}`;
      const port = Number(get('METRICS_PORT'));
      out.push({ name, pid: child, ...(port > 0 ? { metricsPort: port } : {}) });
    } catch {
      // exited between listing and reading
    }
  }
  return out;
}

export interface GatewayOptions {
  /** More environment for start.ts (and so every service), e.g. a pool's limits. */
  env?: Record<string, string>;
  /** `--workers` for start.ts, e.g. `openai=2`. */
  workers?: string;
}

export async function startUserGateway(opts: GatewayOptions = {}): Promise<UserGateway> {
  const adminUrl = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
  const logDir = mkdtempSync(join(tmpdir(), 'faregate-soak-'));
  mkdirSync(logDir, { recursive: true });
  const procs: Proc[] = [];
  const start = (name: string, cmd: string, args: string[], env: Record<string, string>): Proc => {
    const log = join(logDir, `${name}.log`);
    const fd = openSync(log, 'a');
    // A process group of its own: a terminal's Ctrl-C reaches only us, and we stop it in order.
    const proc = spawn(cmd, args, { cwd: ROOT, env, detached: true, stdio: ['ignore', fd, fd] });
    closeSync(fd);
    const p: Proc = { name, proc, log, exited: once(proc, 'exit').then(() => {}) };
    procs.push(p);
    return p;
  };
  const baseEnv = { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', NO_COLOR: '1' };
  const dbName = `fg_soak_${randomBytes(5).toString('hex')}`;
  const admin = async (sql: string) => {
    const c = new pg.Client({ connectionString: adminUrl });
    await c.connect();
    try {
      await c.query(sql);
    } finally {
      await c.end();
    }
  };
  const redisDir = mkdtempSync(join(tmpdir(), 'faregate-soak-redis-'));
  let dbCreated = false;
  let faregate: Proc | undefined;
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      process.off('exit', killAll);
      const grace = async (p: Proc, ms: number) => {
        if (!alive(p)) return;
        p.proc.kill('SIGTERM');
        const t = setTimeout(() => p.proc.kill('SIGKILL'), ms);
        await p.exited;
        clearTimeout(t);
      };
      // The gateway first (start.ts stops its services in order), then the fake and Redis.
      if (faregate) await grace(faregate, 40_000);
      await Promise.all(procs.filter((p) => p !== faregate).map((p) => grace(p, 5_000)));
      if (dbCreated)
        await admin(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`).catch((e) =>
          console.error(`could not drop database ${dbName}: ${(e as Error).message}`),
        );
      rmSync(redisDir, { recursive: true, force: true });
    })();
    return stopping;
  };
  const killAll = () => {
    for (const p of procs) if (alive(p)) p.proc.kill(p === faregate ? 'SIGTERM' : 'SIGKILL');
  };
  process.on('exit', killAll);

  try {
    const redisPort = await freePort();
    const redisUrl = `redis://127.0.0.1:${redisPort}`;
    const redis = start(
      'redis',
      'redis-server',
      [
        '--port',
        String(redisPort),
        '--bind',
        '127.0.0.1',
        '--save',
        '',
        '--appendonly',
        'yes',
        '--dir',
        redisDir,
        '--maxmemory-policy',
        'noeviction',
      ],
      baseEnv,
    );
    const fake = start('fake', process.execPath, ['bench/support/fake-process.ts'], baseEnv);
    const fakeUrl = await (async () => {
      const end = Date.now() + READY_TIMEOUT_MS;
      for (;;) {
        const line = readFileSync(fake.log, 'utf8').split('\n')[0] ?? '';
        if (line.startsWith('{') && line.endsWith('}'))
          return (JSON.parse(line) as { fakeUrl: string }).fakeUrl;
        if (!alive(fake) || Date.now() > end) throw new Error(`fake provider did not start:\n${tail(fake)}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    const probe = new Redis(redisUrl, {
      lazyConnect: true,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
    });
    probe.on('error', () => {});
    for (const end = Date.now() + 10_000; ; ) {
      if (!alive(redis)) throw new Error(`redis-server exited:\n${tail(redis)}`);
      if (
        await probe.connect().then(
          () => probe.ping().then((r) => r === 'PONG'),
          () => false,
        )
      )
        break;
      probe.disconnect();
      if (Date.now() > end) throw new Error('redis-server did not answer');
      await new Promise((r) => setTimeout(r, 100));
    }
    probe.disconnect();

    await admin(`CREATE DATABASE ${dbName}`);
    dbCreated = true;
    const dbUrl = new URL(adminUrl);
    dbUrl.pathname = `/${dbName}`;
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const apiKey = `fg_soak_${randomBytes(12).toString('hex')}`;
    faregate = start(
      'faregate',
      process.execPath,
      ['scripts/start.ts', ...(opts.workers ? ['--workers', opts.workers] : [])],
      {
        ...baseEnv,
        REDIS_URL: redisUrl,
        DATABASE_URL: dbUrl.toString(),
        PORT: String(port),
        FAKE_PROVIDER_URL: fakeUrl,
        FAREGATE_CONFIG: join(ROOT, 'faregate.config.json'),
        FAREGATE_BOOTSTRAP_KEY: apiKey,
        FAREGATE_BOOTSTRAP_CREDIT_USD: '1000000',
        LOG_LEVEL: 'warn',
        ...opts.env,
      },
    );
    await waitHttp(`${url}/readyz`, faregate);
    const sup = faregate;
    return {
      url,
      apiKey,
      fakeUrl,
      redisUrl,
      databaseUrl: dbUrl.toString(),
      logDir,
      faregate: sup,
      services: () => [{ name: 'start', pid: sup.proc.pid ?? 0 }, ...childrenOf(sup.proc.pid ?? 0)],
      others: () => [
        { name: 'fake', pid: fake.proc.pid ?? 0 },
        { name: 'redis', pid: redis.proc.pid ?? 0 },
      ],
      stop,
    };
  } catch (e) {
    await stop().catch(() => {});
    throw e;
  }
}

/** Resident set size of a process in MiB (NaN once it is gone). */
export function rssMiB(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

/** One Prometheus sample's value from a metrics page (the first series of that name). */
export function metric(text: string, name: string): number {
  const m = new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.eE+-]+|NaN)$`, 'm').exec(text);
  return m ? Number(m[1]) : Number.NaN;
}
