import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { pg } from './start/database.ts';
import { freePort } from './start/net.ts';
import { testRedis, until } from '../packages/testing/src/env.ts';

const root = fileURLToPath(new URL('..', import.meta.url));
const emptyEnvFile = join(mkdtempSync(join(tmpdir(), 'fg-start-')), 'empty.env');
writeFileSync(emptyEnvFile, '');
const KEY = 'fg-start-test-key-0123456789';

/** Direct children of `pid` (Linux /proc), i.e. the services the runner started. */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      // Fields after the parenthesised command: state, ppid, …
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push(Number(entry));
    } catch {
      // The process ended while we looked.
    }
  }
  return out;
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/** The runner's children whose command line names `script` (e.g. `services/worker`). */
const servicesOf = (pid: number, script: string) =>
  childrenOf(pid).filter((p) => {
    try {
      return readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(script);
    } catch {
      return false;
    }
  });

interface Runner {
  proc: ChildProcess;
  url: string;
  fakeUrl: string;
  databaseUrl: string;
  output: () => string;
  exit: Promise<number | null>;
}

const dbNames: string[] = [];
const runners: Runner[] = [];
const adminUrl = inject('databaseUrl');

/** `node scripts/start.ts` with its own Redis prefix, a database that does not exist yet, free ports. */
async function launch(args: string[], extraEnv: Record<string, string> = {}): Promise<Runner> {
  const { url: redisUrl, prefix } = testRedis();
  const db = new URL(adminUrl);
  db.pathname = `/fg_start_${prefix}`;
  dbNames.push(`fg_start_${prefix}`);
  const taken = new Set<number>();
  // Below the kernel's ephemeral range (32768 up): a port probed free there can be taken, before a
  // service binds it, as the local port of any outgoing connection on the machine (EADDRINUSE).
  const port = await freePort(20_000 + Math.floor(Math.random() * 11_000), taken);
  const fakePort = await freePort(port + 1, taken);
  // Metrics ports of its own too: the default 9090 may be another test's at the moment it binds.
  const metricsBase = await freePort(fakePort + 1, taken);
  const proc = spawn(process.execPath, ['scripts/start.ts', '--env-file', emptyEnvFile, ...args], {
    cwd: root,
    env: {
      PATH: process.env.PATH,
      REDIS_URL: redisUrl,
      REDIS_PREFIX: prefix,
      DATABASE_URL: db.toString(),
      PORT: String(port),
      HOST: '127.0.0.1',
      FAKE_PROVIDER_PORT: String(fakePort),
      METRICS_PORT: String(metricsBase),
      FAREGATE_BOOTSTRAP_KEY: KEY,
      DIRECTORY_REFRESH_MS: '300',
      LOG_LEVEL: 'info',
      ...extraEnv,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout?.on('data', (b: Buffer) => (out += b.toString()));
  proc.stderr?.on('data', (b: Buffer) => (out += b.toString()));
  const exit = once(proc, 'exit').then(([code]) => code as number | null);
  const runner = {
    proc,
    url: `http://127.0.0.1:${port}`,
    fakeUrl: `http://127.0.0.1:${fakePort}`,
    databaseUrl: db.toString(),
    output: () => out,
    exit,
  };
  runners.push(runner);
  await until(() => out.includes('Ctrl-C stops everything.') || proc.exitCode !== null, {
    timeoutMs: 60_000,
    what: 'the stack to start',
  });
  if (proc.exitCode !== null) throw new Error(`start.ts exited early:\n${out}`);
  return runner;
}

const chat = (r: Runner, content: string) =>
  fetch(`${r.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content }] }),
  });
type Completion = { id: string; choices: Array<{ message: { content: string } }> };

/** The fake provider's log of chat calls to its OpenAI endpoint (in flight ones included). */
const openaiChatCalls = async (r: Runner) =>
  ((await (await fetch(`${r.fakeUrl}/_control/calls`)).json()) as FakeCall[]).filter(
    (c) => c.provider === 'openai' && c.model !== null && c.path.includes('chat'),
  );
type FakeCall = { provider: string; model: string | null; path: string; status: number };

/** The settled usage rows of one request, once there are any. */
/** The request's usage events in attempt order, once there are at least `n`. */
async function usageRows(r: Runner, id: string, n = 1): Promise<Array<{ outcome: string; final: boolean }>> {
  const db = new pg.Client({ connectionString: r.databaseUrl });
  await db.connect();
  try {
    return await until(
      async () => {
        const q = await db.query(
          'SELECT outcome, final FROM usage_events WHERE request_id = $1 ORDER BY hop, attempt',
          [id],
        );
        return q.rows.length >= n ? q.rows : undefined;
      },
      { what: `usage row of ${id}` },
    );
  } finally {
    await db.end();
  }
}

afterAll(async () => {
  // A failed test may leave its runner up: SIGTERM lets it stop its services too.
  for (const r of runners) {
    if (r.proc.exitCode === null && r.proc.signalCode === null) r.proc.kill('SIGTERM');
    await r.exit;
  }
  rmSync(dirname(emptyEnvFile), { recursive: true, force: true });
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  for (const name of dbNames) await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  await admin.end();
});

describe('pnpm start', () => {
  it('runs every service with prefixed output, serves and bills a request, and stops them all on SIGINT', async () => {
    const r = await launch(['--workers', 'openai=2,anthropic=0,gemini=0,llama=0']);
    const pid = r.proc.pid!;
    const services = childrenOf(pid);
    // fake provider, ingress, billing, two openai workers
    expect(services).toHaveLength(5);
    const names = ['[fake-provider]', '[ingress]', '[billing]', '[worker-openai#1]', '[worker-openai#2]'];
    await until(() => names.every((n) => r.output().includes(n)), { what: `output of ${names.join(', ')}` });
    expect(r.output()).not.toContain('[worker-anthropic]');
    expect(r.output()).toContain('created database');

    const res = await fetch(`${r.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello' }] }),
    });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { id: string; choices: Array<{ message: { content: string } }> };
    expect(body.choices[0]?.message.content.length).toBeGreaterThan(0);
    // Billing runs against the same database: the usage row gets settled.
    const db = new pg.Client({ connectionString: r.databaseUrl });
    await db.connect();
    try {
      await until(
        async () =>
          (await db.query('SELECT 1 FROM usage_events WHERE request_id = $1', [body.id])).rowCount === 1,
        {
          what: 'usage row',
        },
      );
    } finally {
      await db.end();
    }
    // The ingress hosts the pools (INGRESS_POOLS, which pnpm start sets): once it has read that the
    // pool's workers run the fast lane, it runs the requests itself, as its /metrics counts.
    await until(
      async () => {
        const again = await chat(r, 'hosted?');
        expect(again.status).toBe(200);
        await again.body?.cancel();
        const port = /metrics: ingress :(\d+)/.exec(r.output())?.[1];
        const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
        return /^faregate_worker_fast_lane_total\{event="run",provider="openai"\} [1-9]/m.test(metrics);
      },
      { what: 'a request run by the ingress' },
    );

    r.proc.kill('SIGINT');
    expect(await r.exit).toBe(0);
    expect(services.filter(alive)).toEqual([]);
    expect(r.output()).toContain('[start]');
    expect(r.output()).toMatch(/\[worker-openai#1\]\s+.*draining/);
  }, 90_000);

  it('restarts a service killed with kill -9 while the others stay up, and stops everything without restarting on SIGTERM', async () => {
    // No pools (so no fake either): just ingress and billing, the quickest stack to start.
    const r = await launch(['--workers', 'openai=0,anthropic=0,gemini=0,llama=0']);
    const pid = r.proc.pid!;
    const [billing] = servicesOf(pid, 'services/billing');
    const [ingress] = servicesOf(pid, 'services/ingress');
    expect(billing).toBeDefined();
    expect(ingress).toBeDefined();
    process.kill(billing!, 'SIGKILL');
    const restarted = await until(() => servicesOf(pid, 'services/billing').find((p) => p !== billing), {
      what: 'a new billing process',
    });
    expect(r.output()).toMatch(/\[billing\]\s+exited \(SIGKILL\); restarting in 250 ms \(restart 1\)/);
    expect(r.proc.exitCode).toBeNull();
    expect(alive(ingress!)).toBe(true);
    expect((await fetch(`${r.url}/readyz`)).ok).toBe(true);

    r.proc.kill('SIGTERM');
    expect(await r.exit).toBe(0);
    expect([ingress!, restarted].filter(alive)).toEqual([]);
    expect(r.output()).toMatch(/\[ingress\]\s+.*draining/);
    const afterStop = r.output().slice(r.output().indexOf('stopping (SIGTERM)'));
    expect(afterStop).not.toContain('restarting');
  }, 90_000);

  it('restarts a worker killed with kill -9 mid-request: the request still gets one complete answer, the killed call and the re-run each billed once, and the gateway keeps serving', async () => {
    // A short lock, so the restarted worker re-runs the killed job within seconds, not 30.
    // Every request through the worker (INGRESS_POOLS empty): by default the ingress would run it.
    const r = await launch(['--workers', 'openai=1,anthropic=0,gemini=0,llama=0'], {
      INGRESS_POOLS: '',
      WORKER_LOCK_MS: '2000',
      WORKER_STALLED_INTERVAL_MS: '500',
    });
    const pid = r.proc.pid!;
    const [worker] = servicesOf(pid, 'services/worker');
    expect(worker).toBeDefined();
    const others = childrenOf(pid).filter((p) => p !== worker);
    expect(others).toHaveLength(3); // fake provider, ingress, billing
    // A slow answer (60 tokens 40 ms apart, about 2.4 s), so the kill lands while it is generated.
    const config = await fetch(`${r.fakeUrl}/_control/config`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ provider: 'openai', chunkMs: 40, tokens: 60 }),
    });
    expect(config.ok).toBe(true);

    const inFlight = chat(r, 'a long story');
    await until(async () => (await openaiChatCalls(r)).length === 1, {
      what: 'the worker to call the provider',
    });
    process.kill(worker!, 'SIGKILL');
    const restarted = await until(() => servicesOf(pid, 'services/worker').find((p) => p !== worker), {
      what: 'a new worker process',
    });
    expect(r.output()).toMatch(/\[worker-openai\]\s+exited \(SIGKILL\); restarting in 250 ms \(restart 1\)/);

    // The restarted worker re-runs the job: the caller gets one complete answer. Both calls are
    // billed once: the killed one (estimated, not final), then the re-run's (final).
    const res = await inFlight;
    expect(res.status).toBe(200);
    const first = (await res.json()) as Completion;
    expect(first.choices[0]?.message.content.length).toBeGreaterThan(0);
    expect(await openaiChatCalls(r)).toHaveLength(2);
    expect(await usageRows(r, first.id, 2)).toEqual([
      { outcome: 'failed', final: false },
      { outcome: 'success', final: true },
    ]);

    // And it serves new requests; settled after the re-run job, so that one was not billed again.
    const next = await chat(r, 'hello again');
    expect(next.status).toBe(200);
    const second = (await next.json()) as Completion;
    expect(await usageRows(r, second.id)).toEqual([{ outcome: 'success', final: true }]);
    expect(await usageRows(r, first.id)).toHaveLength(2);
    expect(r.proc.exitCode).toBeNull();
    expect(others.filter(alive)).toEqual(others);
    expect(alive(restarted)).toBe(true);

    r.proc.kill('SIGINT');
    expect(await r.exit).toBe(0);
    expect([...others, restarted].filter(alive)).toEqual([]);
  }, 120_000);
});
