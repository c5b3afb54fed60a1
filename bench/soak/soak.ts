/**
 * Soak: the gateway as users start it (`node scripts/start.ts`, the shipped faregate.config.json) under
 * a steady mixed load (chat completions as JSON and SSE, async jobs over WebSocket; OpenAI, Anthropic
 * and Gemini models) for a configurable time. Every few seconds it samples p50/p99 latency,
 * throughput, error counts, the RSS of every process, each service's event-loop lag and open handles
 * (its Prometheus metrics), Redis memory and keys, and Postgres size and ledger rows. At the end it
 * writes a CSV and an SVG plot to bench/soak/out/ and prints a summary with a leak verdict (the RSS
 * trend after warm-up) and the ledger's invariants.
 *
 *   node bench/soak/soak.ts [--minutes 30] [--rate 50] [--sample-seconds 5] [--warmup-minutes 5]
 */
import { cpus, loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import pg from 'pg';
import { metric, rssMiB, startUserGateway, type UserGateway } from './gateway.ts';
import type { Sample } from './report.ts';
import { writeReport } from './report.ts';
import { http, pct, type Result, WsClients } from './traffic.ts';

const HELP = `usage: node bench/soak/soak.ts [options]
  --minutes M          how long the load runs (default 30)
  --rate R             requests started per second, open loop (default 50)
  --sample-seconds S   sampling interval (default 5)
  --warmup-minutes W   left out of the leak verdict (default: 5, or a sixth of the run if shorter)
  --out DIR            where the CSV and SVG go (default bench/soak/out)`;

const { values: argv } = parseArgs({
  options: {
    minutes: { type: 'string', default: '30' },
    rate: { type: 'string', default: '50' },
    'sample-seconds': { type: 'string', default: '5' },
    'warmup-minutes': { type: 'string' },
    out: { type: 'string', default: fileURLToPath(new URL('./out', import.meta.url)) },
    help: { type: 'boolean', default: false },
  },
});
if (argv.help) {
  console.log(HELP);
  process.exit(0);
}
const num = (name: string, v: string | undefined): number => {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) {
    console.error(`--${name} must be a positive number, got ${JSON.stringify(v)}\n${HELP}`);
    process.exit(2);
  }
  return n;
};
const minutes = num('minutes', argv.minutes);
const rate = num('rate', argv.rate);
const sampleS = num('sample-seconds', argv['sample-seconds']);
const warmupMin =
  argv['warmup-minutes'] === undefined
    ? Math.min(5, minutes / 6)
    : num('warmup-minutes', argv['warmup-minutes']);
const outDir = argv.out;
const TIMEOUT_MS = 30_000;
/** Requests in flight beyond this are not started (counted as skipped): the client never runs away. */
const MAX_IN_FLIGHT = 2_000;

// A deterministic mix (mulberry32), so two runs offer the same load.
let state = 0x5eed;
const rand = () => {
  state = (state + 0x6d2b79f5) | 0;
  let t = Math.imul(state ^ (state >>> 15), 1 | state);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};

console.log(`$ node bench/soak/soak.ts ${process.argv.slice(2).join(' ')}`.trimEnd());
console.log(
  `node ${process.version}, ${cpus().length} cores, load average ${loadavg()
    .map((l) => l.toFixed(2))
    .join(
      ' ',
    )}; ${minutes} min at ${rate} req/s (50% JSON, 30% SSE, 20% WS jobs), sampled every ${sampleS} s`,
);

let gw: UserGateway | undefined;
let stopping = false;
const stopAll = async (code: number) => {
  if (stopping) return;
  stopping = true;
  await gw?.stop().catch(() => {});
  process.exit(code);
};
for (const s of ['SIGINT', 'SIGTERM'] as const) process.once(s, () => void stopAll(130));

gw = await startUserGateway();
const g = gw;
console.log(
  `gateway ${g.url}: ${g
    .services()
    .map((s) => `${s.name} ${s.pid}`)
    .join(', ')}; logs in ${g.logDir}`,
);
// The provider takes a little time, as real ones do (~20 ms to the first byte, 3 ms a token).
await fetch(`${g.fakeUrl}/_control/config`, {
  method: 'POST',
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify({ firstByteMs: 20, chunkMs: 3 }),
});
const redis = new Redis(g.redisUrl, { maxRetriesPerRequest: 1 });
redis.on('error', () => {});
const sql = new pg.Pool({ connectionString: g.databaseUrl, max: 2 });
sql.on('error', () => {});
const ws = new WsClients(g.url, g.apiKey, 4);

// ─── load ───────────────────────────────────────────────────────────────────────────────────────

let window: Result[] = [];
let inFlight = 0;
let skipped = 0;
const totals = { sent: 0, complete: 0, byStatus: new Map<string, number>() };
const fire = () => {
  if (inFlight >= MAX_IN_FLIGHT) {
    skipped++;
    return;
  }
  inFlight++;
  totals.sent++;
  const r = rand();
  const p =
    r < 0.5
      ? http(g.url, g.apiKey, 'json', rand, TIMEOUT_MS)
      : r < 0.8
        ? http(g.url, g.apiKey, 'sse', rand, TIMEOUT_MS)
        : ws.submit(rand, TIMEOUT_MS);
  void p.then((res) => {
    inFlight--;
    window.push(res);
    if (res.complete) totals.complete++;
    const key = res.complete ? 'ok' : `${res.status} ${res.error ?? ''}`.trim();
    totals.byStatus.set(key, (totals.byStatus.get(key) ?? 0) + 1);
  });
};
const t0 = performance.now();
const endAt = t0 + minutes * 60_000;
// Open loop: requests start on schedule whatever the latency (a ticker catching up on missed slots).
let due = 0;
const ticker = setInterval(() => {
  const should = Math.floor(((performance.now() - t0) / 1000) * rate);
  for (; due < should; due++) fire();
}, 10);

// ─── sampling ───────────────────────────────────────────────────────────────────────────────────

const samples: Sample[] = [];
const columns: string[] = [];
const restarts = new Map<string, number>();
const lastPid = new Map<string, number>();

async function scrape(port: number): Promise<string> {
  const r = await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(2_000) }).catch(
    () => undefined,
  );
  return r?.ok ? r.text() : '';
}

async function sample(): Promise<void> {
  const batch = window;
  window = [];
  const t = (performance.now() - t0) / 1000;
  const lat = batch.filter((r) => r.complete).map((r) => r.ms);
  const values: Record<string, number> = {
    rps: lat.length / sampleS,
    p50_ms: pct(lat, 50),
    p99_ms: pct(lat, 99),
    errors: batch.filter((r) => !r.complete && r.status !== 0).length,
    client_failures: batch.filter((r) => r.status === 0).length,
    in_flight: inFlight,
  };
  const procs = [...g.services(), ...g.others()];
  await Promise.all(
    procs.map(async (p) => {
      values[`rss_mib:${p.name}`] = rssMiB(p.pid);
      if (lastPid.has(p.name) && lastPid.get(p.name) !== p.pid)
        restarts.set(p.name, (restarts.get(p.name) ?? 0) + 1);
      lastPid.set(p.name, p.pid);
      if ('metricsPort' in p && typeof p.metricsPort === 'number') {
        const text = await scrape(p.metricsPort);
        values[`lag_p99_ms:${p.name}`] = metric(text, 'nodejs_eventloop_lag_p99_seconds') * 1000;
        values[`handles:${p.name}`] = metric(text, 'nodejs_active_handles_total');
      }
    }),
  );
  try {
    const info = await redis.info('memory');
    values.redis_used_mib = Number(/used_memory:(\d+)/.exec(info)?.[1]) / 2 ** 20;
    values.redis_keys = await redis.dbsize();
  } catch {
    values.redis_used_mib = Number.NaN;
    values.redis_keys = Number.NaN;
  }
  try {
    const q = await sql.query<{ size: string; usage: string; entries: string }>(
      `SELECT pg_database_size(current_database())::text AS size,
              (SELECT count(*) FROM usage_events)::text AS usage,
              (SELECT count(*) FROM journal_entries)::text AS entries`,
    );
    const row = q.rows[0];
    values.pg_mib = Number(row?.size) / 2 ** 20;
    values.usage_events = Number(row?.usage);
    values.journal_entries = Number(row?.entries);
  } catch {
    values.pg_mib = values.usage_events = values.journal_entries = Number.NaN;
  }
  for (const k of Object.keys(values)) if (!columns.includes(k)) columns.push(k);
  samples.push({ t, values });
  const f = (v: number | undefined, d = 1) => (v === undefined || !Number.isFinite(v) ? '—' : v.toFixed(d));
  const rss = procs.map((p) => `${p.name} ${f(values[`rss_mib:${p.name}`], 0)}`).join(' ');
  console.log(
    `${(t / 60).toFixed(1).padStart(5)} min  ${f(values.rps).padStart(6)} req/s  p50 ${f(values.p50_ms)} p99 ${f(values.p99_ms)} ms  err ${values.errors} fail ${values.client_failures}  RSS MiB: ${rss}  redis ${f(values.redis_used_mib)} MiB ${values.redis_keys} keys  pg ${f(values.pg_mib)} MiB ${values.usage_events} events`,
  );
}

await new Promise<void>((resolve) => {
  const timer = setInterval(() => {
    void sample().then(() => {
      if (performance.now() >= endAt) {
        clearInterval(timer);
        resolve();
      }
    });
  }, sampleS * 1000);
});
clearInterval(ticker);
// Let what is in flight finish (a bounded wait: anything left is reported).
for (const end = performance.now() + TIMEOUT_MS + 5_000; inFlight > 0 && performance.now() < end; )
  await new Promise((r) => setTimeout(r, 100));
ws.close();

// ─── report ─────────────────────────────────────────────────────────────────────────────────────

const {
  leak,
  lines: verdicts,
  csvPath,
  svgPath,
} = writeReport({
  samples,
  columns,
  title: `Faregate soak: ${minutes} min at ${rate} req/s (pnpm start, shipped config, 2-core VM)`,
  warmupMin,
  outDir,
  gateway: g.services().map((p) => p.name),
});
const post = samples.filter((s) => s.t >= warmupMin * 60);
const lat = post.map((s) => s.values.p99_ms ?? Number.NaN).filter(Number.isFinite);
const ledger = await sql.query<{ unbalanced: string; total: string; drift: string; holds: string }>(
  `SELECT (SELECT count(*) FROM (SELECT 1 FROM journal_entries GROUP BY transaction_id HAVING sum(amount_micros) <> 0) x)::text AS unbalanced,
          (SELECT coalesce(sum(amount_micros), 0) FROM journal_entries)::text AS total,
          (SELECT count(*) FROM ledger_accounts l LEFT JOIN (SELECT ledger_account_id, sum(amount_micros) s FROM journal_entries GROUP BY 1) e ON e.ledger_account_id = l.id WHERE l.balance_micros <> coalesce(e.s, 0))::text AS drift,
          (SELECT count(*) FROM holds WHERE expires_at < now())::text AS holds`,
);
const l = ledger.rows[0];
const elapsed = (performance.now() - t0) / 1000;
console.log(
  `\n════ soak summary (${(elapsed / 60).toFixed(1)} min, warm-up ${warmupMin} min left out of the verdict)`,
);
console.log(
  `requests: ${totals.sent} sent, ${totals.complete} complete (${((totals.complete / Math.max(1, totals.sent)) * 100).toFixed(2)} %), ${skipped} not sent (client at ${MAX_IN_FLIGHT} in flight), ${inFlight} still in flight at the end`,
);
console.log(
  `outcomes: ${[...totals.byStatus]
    .sort((a, b) => b[1] - a[1])
    .map(([k, n]) => `${k}: ${n}`)
    .join(', ')}`,
);
console.log(
  `p99 per sample after warm-up: median ${pct(lat, 50).toFixed(1)} ms, worst ${Math.max(...lat).toFixed(1)} ms; p50 median ${pct(post.map((s) => s.values.p50_ms ?? Number.NaN).filter(Number.isFinite), 50).toFixed(1)} ms`,
);
console.log(
  `process restarts seen: ${restarts.size === 0 ? 'none' : [...restarts].map(([n, k]) => `${n} ×${k}`).join(', ')}`,
);
console.log(
  `ledger: ${l?.unbalanced} unbalanced transactions, global sum ${l?.total}, ${l?.drift} balances drifted, ${l?.holds} expired holds left`,
);
for (const v of verdicts) console.log(v);
console.log(`wrote ${csvPath}\nwrote ${svgPath}`);

redis.disconnect();
await sql.end();
await stopAll(leak ? 1 : 0);
