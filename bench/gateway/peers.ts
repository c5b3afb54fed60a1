/**
 * Peer comparison: Faregate started the way users start it (`node scripts/start.ts` with the shipped
 * faregate.config.json, limits on but far from binding) measured side by side with Portkey's
 * open-source gateway (`@portkey-ai/gateway`, pinned in bench/package.json) and with the upstream
 * directly, in the same run, against one fake provider answering at 0 ms. Non-streaming and
 * streaming chat requests at 1 connection (added latency, time to first chunk) and at 32
 * (requests/s, CPU ms per request of every process).
 *
 * Requests are sent as most SDK callers send them, without `max_tokens`: the gateway then reserves
 * budget for the route's worst case (the longest answer of the costliest model it may fall back to),
 * which is what its admission has to carry in production. `--max-tokens N` sends a cap instead.
 *
 *   node bench/gateway/peers.ts [--requests 1000] [--seconds 10] [--warmup 200] [--runs 3] [--max-tokens N]
 *                               [--env K=V]…
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import pg from 'pg';
import { Pool } from 'undici';
import { type CpuMeter, cpuMeter } from '../support/cpu.ts';
import { closedLoop, type LoadResult, median, percentile } from '../support/load.ts';

const HELP = `usage: node bench/gateway/peers.ts [options]
  --requests N   requests per measurement at 1 connection (default 1000; capped at 60 s)
  --seconds S    duration of each measurement at 32 connections (default 10)
  --warmup N     warm-up requests before each measurement (default 200; capped at 3 s)
  --runs N       repetitions, targets alternating within each; figures are medians (default 3)
  --max-tokens N send max_tokens N with every request (default: none, as most SDK callers)
  --env K=V      more environment for the gateway (repeatable), e.g. --env INGRESS_POOLS= to run
                 every request through a worker instead of the ingress hosting its pools`;

const { values: argv } = parseArgs({
  options: {
    requests: { type: 'string', default: '1000' },
    seconds: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '200' },
    runs: { type: 'string', default: '3' },
    'max-tokens': { type: 'string' },
    env: { type: 'string', multiple: true, default: [] },
    help: { type: 'boolean', default: false },
  },
});
if (argv.help) {
  console.log(HELP);
  process.exit(0);
}
const positive = (name: string, v: string): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) {
    console.error(`--${name} must be a positive integer, got ${JSON.stringify(v)}\n${HELP}`);
    process.exit(2);
  }
  return n;
};
const requests = positive('requests', argv.requests);
const seconds = positive('seconds', argv.seconds);
const warmup = positive('warmup', argv.warmup);
const runs = positive('runs', argv.runs);
const extraEnv: Record<string, string> = {};
for (const kv of argv.env) {
  const eq = kv.indexOf('=');
  if (eq < 1) {
    console.error(`--env takes KEY=VALUE, got ${JSON.stringify(kv)}\n${HELP}`);
    process.exit(2);
  }
  extraEnv[kv.slice(0, eq)] = kv.slice(eq + 1);
}
const maxTokens = argv['max-tokens'] === undefined ? undefined : positive('max-tokens', argv['max-tokens']);

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const PORTKEY_BIN = fileURLToPath(
  new URL('../node_modules/@portkey-ai/gateway/build/start-server.js', import.meta.url),
);
const PORTKEY_VERSION = (
  JSON.parse(
    readFileSync(new URL('../node_modules/@portkey-ai/gateway/package.json', import.meta.url), 'utf8'),
  ) as { version: string }
).version;
const LEVELS = [1, 32] as const;
const MODES = ['json', 'sse'] as const;
const TARGETS = ['direct', 'portkey', 'faregate'] as const;
type Level = (typeof LEVELS)[number];
type Mode = (typeof MODES)[number];
type Target = (typeof TARGETS)[number];
const MAX_SINGLE_MS = 60_000;
const MAX_WARMUP_MS = 3_000;
const READY_TIMEOUT_MS = 120_000;
const PROMPT = 'In one short sentence, what is the largest planet in the solar system?';
const FAKE_KEY = 'fake-key';
/** The first streamed chunk that carries text (the fake's first chunk has `"content":""`). */
const CONTENT = /"content":"[^"]/;

const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const adminUrl = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const logDir = join(tmpdir(), `faregate-peers-${process.pid}`);

// ─── processes ──────────────────────────────────────────────────────────────────────────────────

interface Proc {
  name: string;
  proc: ChildProcess;
  log: string;
  exited: Promise<void>;
}
const procs: Proc[] = [];

/** Spawns `node args…` in a process group of its own (so a terminal's Ctrl-C reaches only us). */
function start(name: string, args: string[], env: Record<string, string>, cwd = ROOT): Proc {
  const log = join(logDir, `${name}.log`);
  const fd = openSync(log, 'a');
  const proc = spawn(process.execPath, args, { cwd, env, detached: true, stdio: ['ignore', fd, fd] });
  closeSync(fd);
  const p: Proc = { name, proc, log, exited: once(proc, 'exit').then(() => {}) };
  procs.push(p);
  return p;
}
const alive = (p: Proc) => p.proc.exitCode === null && p.proc.signalCode === null;
const tail = (p: Proc) => {
  try {
    return readFileSync(p.log, 'utf8').split('\n').slice(-30).join('\n');
  } catch {
    return '';
  }
};

async function stopProc(p: Proc, graceMs: number): Promise<void> {
  if (!alive(p)) return;
  p.proc.kill('SIGTERM');
  const t = setTimeout(() => p.proc.kill('SIGKILL'), graceMs);
  await p.exited;
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

/** The services `scripts/start.ts` runs, named from their command line (and pool, for workers). */
function startChildren(startPid: number): { name: string; pid: number }[] {
  const pids: number[] = [];
  for (const t of readdirSync(`/proc/${startPid}/task`)) {
    const text = readFileSync(`/proc/${startPid}/task/${t}/children`, 'utf8').trim();
    if (text) pids.push(...text.split(/\s+/).map(Number));
  }
  const out: { name: string; pid: number }[] = [];
  for (const pid of pids.sort((a, b) => a - b)) {
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      const script = cmd.find((a) => a.endsWith('main.ts')) ?? '';
      const svc = /services\/([^/]+)\/src\/main\.ts$/.exec(script)?.[1] ?? script;
      let name = svc;
      if (svc === 'worker') {
        const env = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
        const pool = env.find((e) => e.startsWith('WORKER_PROVIDER='))?.slice(16) ?? '?';
        name = `worker-${pool}`;
        let i = 2;
        while (out.some((o) => o.name === name)) name = `worker-${pool}#${i++}`;
      }
      out.push({ name, pid });
    } catch {
      // exited between listing and reading
    }
  }
  return out;
}

// ─── set-up ─────────────────────────────────────────────────────────────────────────────────────

const dbName = `fg_bench_peers_${randomBytes(5).toString('hex')}`;
const prefix = `benchpeers${randomBytes(4).toString('hex')}`;
const apiKey = `fg_bench_${randomBytes(12).toString('hex')}`;
const admin = async (sql: string) => {
  const c = new pg.Client({ connectionString: adminUrl });
  await c.connect();
  try {
    await c.query(sql);
  } finally {
    await c.end();
  }
};
let dbCreated = false;
let faregate: Proc | undefined;
let meter: CpuMeter | undefined;

let stopping: Promise<void> | undefined;
function teardown(): Promise<void> {
  stopping ??= (async () => {
    // Its connection to the stack's database would be cut by the drop below.
    meter?.close();
    meter = undefined;
    // start.ts stops its own services (they finish in-flight requests), then exits.
    await Promise.all(procs.map((p) => stopProc(p, p === faregate ? 40_000 : 5_000)));
    if (dbCreated) {
      await admin(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`).catch((e) =>
        console.error(`could not drop database ${dbName}: ${(e as Error).message}`),
      );
    }
    await dropRedisKeys().catch(() => {});
  })();
  return stopping;
}
async function dropRedisKeys(): Promise<void> {
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: 1 });
  try {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length > 0) await redis.unlink(...keys);
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
}
let signalled = false;
for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(s, () => {
    if (signalled) {
      for (const p of procs) if (alive(p)) p.proc.kill('SIGKILL');
      process.exit(130);
    }
    signalled = true;
    console.error(`\n${s}: stopping everything…`);
    void teardown().finally(() => process.exit(130));
  });
}
// Last resort: start.ts stops its services on SIGTERM even after we are gone; the others are killed.
process.on('exit', () => {
  for (const p of procs) if (alive(p)) p.proc.kill(p === faregate ? 'SIGTERM' : 'SIGKILL');
});

const loads: number[] = [];
const fmtLoad = () =>
  loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');

console.log(`$ node bench/gateway/peers.ts ${process.argv.slice(2).join(' ')}`.trimEnd());
console.log(
  `node ${process.version}, ${cpus().length} cores (${cpus()[0]?.model.trim()}), load average ${fmtLoad()}`,
);

let failed = false;
try {
  mkdirSync(logDir, { recursive: true });
  const baseEnv = { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', NO_COLOR: '1' };

  // 1. The fake provider, in a process of its own.
  const fake = start('fake', ['bench/support/fake-process.ts'], baseEnv);
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

  // 2. Faregate, as `pnpm start` runs it: the shipped routing file, every keyless pool on our fake.
  await admin(`CREATE DATABASE ${dbName}`);
  dbCreated = true;
  const dbUrl = new URL(adminUrl);
  dbUrl.pathname = `/${dbName}`;
  const fgPort = await freePort();
  const fgUrl = `http://127.0.0.1:${fgPort}`;
  faregate = start('faregate', ['scripts/start.ts'], {
    ...baseEnv,
    REDIS_URL: redisUrl,
    REDIS_PREFIX: prefix,
    DATABASE_URL: dbUrl.toString(),
    PORT: String(fgPort),
    FAKE_PROVIDER_URL: fakeUrl,
    FAREGATE_CONFIG: join(ROOT, 'faregate.config.json'),
    FAREGATE_BOOTSTRAP_KEY: apiKey,
    FAREGATE_BOOTSTRAP_CREDIT_USD: '1000000',
    // Limits on (the shipped file reads them), far above what this benchmark can offer.
    // An RPM limit that never binds (the issue's setup). No max-in-flight, as in the published runs
    // (a max-in-flight pool now runs the lane too, at one more Redis round trip per lane run).
    OPENAI_RPM: '1000000',
    ...extraEnv,
  });

  // 3. Portkey's gateway, as its README starts it (`npx @portkey-ai/gateway`), on a port of ours.
  const pkPort = await freePort();
  const pkUrl = `http://127.0.0.1:${pkPort}`;
  const portkey = start('portkey', [PORTKEY_BIN, `--port=${pkPort}`], baseEnv, join(ROOT, 'bench'));

  await Promise.all([
    waitHttp(`${fgUrl}/readyz`, faregate),
    waitHttp(`${pkUrl}/`, portkey),
    waitHttp(`${fakeUrl}/healthz`, fake),
  ]);
  const fgServices = startChildren(faregate.proc.pid!);
  const fgNames = fgServices.map((s) => s.name);
  for (const want of ['ingress', 'billing', 'worker-openai']) {
    if (!fgNames.includes(want))
      throw new Error(`no ${want} among start.ts's children (${fgNames.join(', ')})`);
  }
  const services = [
    ...fgServices,
    { name: 'portkey', pid: portkey.proc.pid! },
    { name: 'fake', pid: fake.proc.pid! },
  ];
  console.log(
    `faregate (scripts/start.ts pid ${faregate.proc.pid}): ${fgServices.map((s) => `${s.name} ${s.pid}`).join(', ')}`,
  );
  console.log(`portkey ${PORTKEY_VERSION} pid ${portkey.proc.pid}; fake ${fakeUrl}; logs in ${logDir}`);
  const cpu = cpuMeter(services, redisUrl, dbUrl.toString());
  meter = cpu;

  const targets: Record<
    Target,
    { origin: string; path: string; headers: Record<string, string>; model: string }
  > = {
    direct: {
      origin: fakeUrl,
      path: '/openai/v1/chat/completions',
      headers: { authorization: `Bearer ${FAKE_KEY}` },
      model: 'gpt-4o-mini',
    },
    portkey: {
      origin: pkUrl,
      path: '/v1/chat/completions',
      headers: {
        authorization: `Bearer ${FAKE_KEY}`,
        'x-portkey-provider': 'openai',
        'x-portkey-custom-host': `${fakeUrl}/openai/v1`,
      },
      model: 'gpt-4o-mini',
    },
    faregate: {
      origin: fgUrl,
      path: '/v1/chat/completions',
      headers: { authorization: `Bearer ${apiKey}` },
      model: 'openai/gpt-4o-mini',
    },
  };

  interface Phase {
    run: number;
    level: Level;
    mode: Mode;
    target: Target;
    result: LoadResult;
    /** Time to the first chunk with text, ms, sorted (streams only). */
    firstChunk: Float64Array;
    cpu: Record<string, number>;
  }

  const measure = async (run: number, level: Level, mode: Mode, target: Target): Promise<Phase> => {
    const t = targets[target];
    const body = JSON.stringify({
      model: t.model,
      messages: [{ role: 'user', content: PROMPT }],
      ...(maxTokens !== undefined ? { max_tokens: maxTokens } : {}),
      ...(mode === 'sse' ? { stream: true } : {}),
    });
    const headers = { ...t.headers, 'content-type': 'application/json' };
    const pool = new Pool(t.origin, { connections: level, pipelining: 1, keepAliveTimeout: 60_000 });
    let firsts: number[] = [];
    const send = async () => {
      const t0 = performance.now();
      const res = await pool.request({ path: t.path, method: 'POST', headers, body });
      if (target === 'faregate' && res.headers['x-faregate-provider'] !== 'openai') {
        const text = await res.body.text();
        throw new Error(
          `not served by openai (${res.headers['x-faregate-attempts']}): ${text.slice(0, 200)}`,
        );
      }
      if (mode === 'json') {
        const text = await res.body.text();
        if (res.statusCode !== 200 || !text.includes('"chat.completion"'))
          throw new Error(`HTTP ${res.statusCode} ${text.slice(0, 200)}`);
        return;
      }
      if (res.statusCode !== 200)
        throw new Error(`HTTP ${res.statusCode} ${(await res.body.text()).slice(0, 200)}`);
      res.body.setEncoding('utf8');
      let first: number | undefined;
      // The last characters read, so a match cut across two reads is still found.
      let recent = '';
      for await (const part of res.body as AsyncIterable<string>) {
        const text = recent + part;
        if (first === undefined && CONTENT.test(text)) first = performance.now() - t0;
        recent = text.slice(-24);
      }
      if (first === undefined) throw new Error('stream ended without a chunk with content');
      if (!recent.includes('[DONE]')) throw new Error('stream ended without data: [DONE]');
      firsts.push(first);
    };
    try {
      const warm = await closedLoop({ concurrency: level, maxRequests: warmup, maxMs: MAX_WARMUP_MS, send });
      if (warm.errors > 0) throw new Error(`${target} warm-up failed: ${warm.firstError}`);
      firsts = [];
      await cpu.mark();
      const result = await closedLoop({
        concurrency: level,
        send,
        ...(level === 1
          ? { maxRequests: requests, maxMs: MAX_SINGLE_MS }
          : { maxRequests: Number.POSITIVE_INFINITY, maxMs: seconds * 1000 }),
      });
      const used = await cpu.read();
      if (result.errors > 0)
        throw new Error(`${target} ${mode} c=${level}: ${result.errors} failed, first: ${result.firstError}`);
      return { run, level, mode, target, result, firstChunk: Float64Array.from(firsts).sort(), cpu: used };
    } finally {
      await pool.close();
    }
  };

  /** The processes that serve a request on each path (the fake is upstream of all three). */
  const processesOf = (target: Target): string[] =>
    target === 'direct'
      ? []
      : target === 'portkey'
        ? ['portkey']
        : [...fgNames.filter((n) => n !== 'fake-provider'), 'redis', 'postgres'];
  const cpuPerReq = (p: Phase) => {
    const n = p.result.latenciesMs.length;
    const out: Record<string, number> = {};
    for (const k of [...processesOf(p.target), 'fake', 'bench-client']) out[k] = (p.cpu[k] ?? 0) / n;
    out.gateway = processesOf(p.target).reduce((s, k) => s + (out[k] ?? 0), 0);
    return out;
  };
  const f2 = (v: number) => (Number.isFinite(v) ? v.toFixed(2) : '–');
  const f3 = (v: number) => (Number.isFinite(v) ? v.toFixed(3) : '–');
  const rate = (v: number) => (Number.isFinite(v) ? Math.round(v).toLocaleString('en-US') : '–');

  const sampler = setInterval(() => loads.push(loadavg()[0]!), 5_000);
  const phases: Phase[] = [];
  const t0 = Date.now();
  for (let run = 1; run <= runs; run++) {
    // Each run starts the alternation at another target, so no path always goes first.
    const order = TARGETS.map((_, i) => TARGETS[(i + run - 1) % TARGETS.length]!);
    for (const level of LEVELS) {
      for (const mode of MODES) {
        for (const target of order) {
          const p = await measure(run, level, mode, target);
          phases.push(p);
          const lat = p.result.latenciesMs;
          const perReq = cpuPerReq(p);
          console.log(
            `run ${run} c=${String(level).padEnd(2)} ${mode} ${target.padEnd(8)} n=${String(lat.length).padEnd(6)}` +
              ` p50 ${f2(percentile(lat, 50))} p99 ${f2(percentile(lat, 99))} ms` +
              (mode === 'sse' ? `  first chunk p50 ${f2(percentile(p.firstChunk, 50))} ms` : '') +
              `  ${rate(p.result.rps)} req/s  cpu ms/req: ` +
              Object.entries(perReq)
                .map(([k, v]) => `${k} ${f3(v)}`)
                .join(', '),
          );
        }
        const now = startChildren(faregate.proc.pid!);
        if (now.map((s) => s.pid).join() !== fgServices.map((s) => s.pid).join()) {
          throw new Error(
            `a Faregate service restarted during the run (${now.map((s) => `${s.name} ${s.pid}`).join(', ')}):\n${tail(faregate)}`,
          );
        }
      }
    }
  }
  clearInterval(sampler);
  cpu.close();
  meter = undefined;
  const minutes = ((Date.now() - t0) / 60_000).toFixed(1);

  // ─── summary: medians across runs of per-run figures (differences and ratios taken within a run) ──
  const pick = (run: number, level: Level, mode: Mode, target: Target) =>
    phases.find((p) => p.run === run && p.level === level && p.mode === mode && p.target === target)!;
  const runIds = [...new Set(phases.map((p) => p.run))];
  const med = (f: (run: number) => number) => median(runIds.map(f));
  const p50 = (run: number, l: Level, m: Mode, t: Target) =>
    percentile(pick(run, l, m, t).result.latenciesMs, 50);
  const p99 = (run: number, l: Level, m: Mode, t: Target) =>
    percentile(pick(run, l, m, t).result.latenciesMs, 99);
  const fc50 = (run: number, t: Target) => percentile(pick(run, 1, 'sse', t).firstChunk, 50);
  const rps = (run: number, m: Mode, t: Target) => pick(run, 32, m, t).result.rps;
  const cpuOf = (m: Mode, t: Target, k: string) => med((r) => cpuPerReq(pick(r, 32, m, t))[k] ?? 0);

  const byTarget = <T>(f: (t: Target) => T) =>
    Object.fromEntries(TARGETS.map((t) => [t, f(t)])) as Record<Target, T>;
  const summary = {
    runs,
    portkey: PORTKEY_VERSION,
    latency_1conn_json_ms: byTarget((t) => ({
      p50: med((r) => p50(r, 1, 'json', t)),
      p99: med((r) => p99(r, 1, 'json', t)),
    })),
    added_1conn_json_ms: {
      portkey: {
        p50: med((r) => p50(r, 1, 'json', 'portkey') - p50(r, 1, 'json', 'direct')),
        p99: med((r) => p99(r, 1, 'json', 'portkey') - p99(r, 1, 'json', 'direct')),
      },
      faregate: {
        p50: med((r) => p50(r, 1, 'json', 'faregate') - p50(r, 1, 'json', 'direct')),
        p99: med((r) => p99(r, 1, 'json', 'faregate') - p99(r, 1, 'json', 'direct')),
      },
    },
    first_chunk_1conn_p50_ms: byTarget((t) => med((r) => fc50(r, t))),
    added_first_chunk_1conn_p50_ms: {
      portkey: med((r) => fc50(r, 'portkey') - fc50(r, 'direct')),
      faregate: med((r) => fc50(r, 'faregate') - fc50(r, 'direct')),
    },
    rps_32conn: {
      json: byTarget((t) => med((r) => rps(r, 'json', t))),
      sse: byTarget((t) => med((r) => rps(r, 'sse', t))),
    },
    rps_ratio_faregate_over_portkey_32conn: {
      json: med((r) => rps(r, 'json', 'faregate') / rps(r, 'json', 'portkey')),
      sse: med((r) => rps(r, 'sse', 'faregate') / rps(r, 'sse', 'portkey')),
    },
    cpu_ratio_faregate_over_portkey_32conn: Object.fromEntries(
      MODES.map((m) => [
        m,
        med(
          (r) =>
            cpuPerReq(pick(r, 32, m, 'faregate')).gateway! / cpuPerReq(pick(r, 32, m, 'portkey')).gateway!,
        ),
      ]),
    ) as Record<Mode, number>,
    cpu_ms_per_request_32conn: Object.fromEntries(
      MODES.map((m) => [
        m,
        byTarget((t) =>
          Object.fromEntries(
            [...processesOf(t), 'gateway', 'fake', 'bench-client'].map((k) => [k, cpuOf(m, t, k)]),
          ),
        ),
      ]),
    ) as Record<Mode, Record<Target, Record<string, number>>>,
    load_average_1min_during: { min: Math.min(...loads), median: median(loads), max: Math.max(...loads) },
  };
  console.log(
    `\nsummary (JSON): ${JSON.stringify(summary, (_, v) => (typeof v === 'number' ? Number(v.toFixed(3)) : v))}`,
  );

  const s = summary;
  const a = s.added_1conn_json_ms;
  const lat = s.latency_1conn_json_ms;
  const cj = s.cpu_ms_per_request_32conn.json;
  const cs = s.cpu_ms_per_request_32conn.sse;
  const plus = (v: number) => (Number.isFinite(v) ? `${v >= 0 ? '+' : ''}${v.toFixed(2)}` : '–');
  const ratio = (v: number) => (Number.isFinite(v) ? `${v.toFixed(2)}×` : '–');
  const rows: string[][] = [
    [
      'p50 / p99 at 1 connection, JSON (ms)',
      ...TARGETS.map((t) => `${f2(lat[t].p50)} / ${f2(lat[t].p99)}`),
      '',
    ],
    [
      '**added p50 / p99 over direct**, 1 connection, JSON (ms)',
      '–',
      `${plus(a.portkey.p50)} / ${plus(a.portkey.p99)}`,
      `${plus(a.faregate.p50)} / ${plus(a.faregate.p99)}`,
      '',
    ],
    [
      'first SSE chunk p50 at 1 connection (ms)',
      ...TARGETS.map((t) => f2(s.first_chunk_1conn_p50_ms[t])),
      '',
    ],
    [
      '**added first-chunk p50 over direct** (ms)',
      '–',
      plus(s.added_first_chunk_1conn_p50_ms.portkey),
      plus(s.added_first_chunk_1conn_p50_ms.faregate),
      '',
    ],
    [
      '**req/s at 32 connections, JSON**',
      ...TARGETS.map((t) => rate(s.rps_32conn.json[t])),
      ratio(s.rps_ratio_faregate_over_portkey_32conn.json),
    ],
    [
      '**streams/s at 32 connections, SSE**',
      ...TARGETS.map((t) => rate(s.rps_32conn.sse[t])),
      ratio(s.rps_ratio_faregate_over_portkey_32conn.sse),
    ],
    [
      '**gateway CPU ms/request at 32 connections, JSON / SSE**',
      '–',
      `${f3(cj.portkey.gateway!)} / ${f3(cs.portkey.gateway!)}`,
      `${f3(cj.faregate.gateway!)} / ${f3(cs.faregate.gateway!)}`,
      `${ratio(s.cpu_ratio_faregate_over_portkey_32conn.json)} / ${ratio(s.cpu_ratio_faregate_over_portkey_32conn.sse)}`,
    ],
    ...processesOf('faregate').map((k) => [
      `&nbsp;&nbsp;${k} (ms/request, JSON / SSE)`,
      '',
      '',
      `${f3(cj.faregate[k]!)} / ${f3(cs.faregate[k]!)}`,
      '',
    ]),
    [
      'fake provider (upstream) CPU ms/request, JSON / SSE',
      ...TARGETS.map((t) => `${f3(cj[t].fake!)} / ${f3(cs[t].fake!)}`),
      '',
    ],
  ];
  const ld = s.load_average_1min_during;
  console.log(
    `\n### Faregate vs Portkey ${PORTKEY_VERSION} vs direct (medians of ${runs} run(s), ${minutes} min; ` +
      `fake upstream at 0 ms; ${maxTokens === undefined ? 'no max_tokens' : `max_tokens ${maxTokens}`}; ${cpus().length} cores, 1-min load average ${f2(ld.min)}–${f2(ld.max)}, median ${f2(ld.median)})\n`,
  );
  console.log(`| | direct | Portkey ${PORTKEY_VERSION} | Faregate (\`pnpm start\`) | Faregate / Portkey |`);
  console.log('|---|---:|---:|---:|---:|');
  for (const r of rows) console.log(`| ${r.join(' | ')} |`);
  console.log(
    "\nEach figure is the median over runs of that run's figure; added latency and ratios are taken within a run " +
      'before their median (so a ratio is not the ratio of the medians shown).',
  );
  console.log(
    `Faregate = ${fgNames.join(', ')} (+ Redis, Postgres), limits on (OPENAI_RPM=1000000), default log level${
      Object.keys(extraEnv).length
        ? `, ${Object.entries(extraEnv)
            .map(([k, v]) => `${k}=${v}`)
            .join(' ')}`
        : ''
    }. ` +
      `\`redis\` is the whole Redis server's CPU (shared with anything else using it); \`postgres\` the backends of the stack's database.`,
  );
  console.log(`load average at the end: ${fmtLoad()}`);
} catch (e) {
  failed = true;
  if (!signalled) console.error(`benchmark failed: ${(e as Error).message}`);
} finally {
  await teardown();
}
// The services' output is kept for a failed run only.
if (failed) console.error(`services' output: ${logDir}`);
else rmSync(logDir, { recursive: true, force: true });
process.exit(failed ? 1 : 0);
