/**
 * Overload: the gateway as users start it (`node scripts/start.ts`, shipped faregate.config.json, a
 * max-in-flight limit per pool from the env the file reads) offered 3× what its pools can serve.
 *
 *  1. capacity: a closed loop far past the pools' limits measures the answers per second they give;
 *  2. baseline: half of that, open loop, for latency at ease;
 *  3. overload: `--factor` (3) × capacity, open loop, for `--minutes` (2);
 *  4. recovery: back to half, until every 1-second window's p99 is within 2× the baseline's again.
 *
 * Every second: answers by status, p50/p99 of the accepted, each pool's queue and in-flight count.
 * At the end: how the excess was answered (429/503 with retry-after, against timeouts and other
 * 5xx), the accepted requests' p99, nothing lost (every accepted answer billed exactly once, by
 * SQL; the ledger balanced; no hold left), and the recovery time.
 *
 * The bound on each pool's backlog (MAX_POOL_BACKLOG, ingress) is `--max-backlog` (0: none).
 *
 *   node bench/overload/overload.ts [--minutes 2] [--factor 3] [--max-in-flight 8] [--max-backlog 64]
 */
import { randomBytes } from 'node:crypto';
import { cpus, loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { startUserGateway, type UserGateway } from '../soak/gateway.ts';
import { http, pct, type Result } from '../soak/traffic.ts';

const { values: argv } = parseArgs({
  options: {
    minutes: { type: 'string', default: '2' },
    factor: { type: 'string', default: '3' },
    'max-in-flight': { type: 'string', default: '8' },
    'max-backlog': { type: 'string', default: '64' },
    help: { type: 'boolean', default: false },
  },
});
if (argv.help) {
  console.log(
    'usage: node bench/overload/overload.ts [--minutes 2] [--factor 3] [--max-in-flight 8] [--max-backlog 64]',
  );
  process.exit(0);
}
const minutes = Number(argv.minutes);
const factor = Number(argv.factor);
const maxInFlight = Number(argv['max-in-flight']);
const maxBacklog = Number(argv['max-backlog']);
const TIMEOUT_MS = 60_000;
const CAPACITY_S = 15;
const BASELINE_S = 15;
const RECOVERY_MAX_S = 900;

let s = 0x51ed;
const rand = () => {
  s = (s + 0x6d2b79f5) | 0;
  let t = Math.imul(s ^ (s >>> 15), 1 | s);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};

console.log(`$ node bench/overload/overload.ts ${process.argv.slice(2).join(' ')}`.trimEnd());
console.log(
  `node ${process.version}, ${cpus().length} cores, load average ${loadavg()
    .map((l) => l.toFixed(2))
    .join(' ')}`,
);

const adminToken = `admin_${randomBytes(12).toString('hex')}`;
let gw: UserGateway | undefined;
for (const sig of ['SIGINT', 'SIGTERM'] as const)
  process.once(sig, () => void (gw?.stop() ?? Promise.resolve()).finally(() => process.exit(130)));
gw = await startUserGateway({
  env: {
    FAREGATE_ADMIN_TOKEN: adminToken,
    MAX_POOL_BACKLOG: String(maxBacklog),
    OPENAI_MAX_IN_FLIGHT: String(maxInFlight),
    ANTHROPIC_MAX_IN_FLIGHT: String(maxInFlight),
    GEMINI_MAX_IN_FLIGHT: String(maxInFlight),
  },
});
const g = gw;
// A provider that takes ~20 ms to the first byte and 3 ms a token (~100 ms an answer).
await fetch(`${g.fakeUrl}/_control/config`, {
  method: 'POST',
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify({ firstByteMs: 20, chunkMs: 3 }),
});
const sql = new pg.Pool({ connectionString: g.databaseUrl, max: 2 });
console.log(
  `gateway ${g.url} (max in flight ${maxInFlight} and MAX_POOL_BACKLOG ${maxBacklog} per pool: openai, anthropic, gemini); logs in ${g.logDir}`,
);

const all: Array<Result & { phase: string; at: number }> = [];
let phase = 'capacity';
let inFlight = 0;
const send = async () => {
  // A request belongs to the phase that sent it (its answer may come in the next one).
  const sentIn = phase;
  inFlight++;
  const r = await http(g.url, g.apiKey, rand() < 0.7 ? 'json' : 'sse', rand, TIMEOUT_MS);
  inFlight--;
  all.push({ ...r, phase: sentIn, at: performance.now() });
  return r;
};

// 1. capacity: a closed loop of 64 clients (8× what the three pools may run at once).
{
  const end = performance.now() + CAPACITY_S * 1000;
  await Promise.all(
    Array.from({ length: 64 }, async () => {
      while (performance.now() < end) await send();
    }),
  );
}
const capRuns = all.filter((r) => r.phase === 'capacity');
const capacity = capRuns.filter((r) => r.status === 200).length / CAPACITY_S;
console.log(
  `capacity: ${capacity.toFixed(1)} answers/s (closed loop, 64 clients, ${CAPACITY_S} s; ${capRuns.filter((r) => r.status !== 200).length} refused)`,
);

/** Open loop at `rate` req/s for `seconds` (or until `stop()` says so), reporting every second. */
async function openLoop(name: string, rate: number, seconds: number, stop?: () => boolean) {
  phase = name;
  const t0 = performance.now();
  let due = 0;
  let lastReport = t0;
  const pending: Promise<unknown>[] = [];
  while (performance.now() - t0 < seconds * 1000 && !stop?.()) {
    const should = Math.floor(((performance.now() - t0) / 1000) * rate);
    for (; due < should; due++) pending.push(send());
    if (performance.now() - lastReport >= 1000) {
      lastReport = performance.now();
      await report(name, (lastReport - t0) / 1000);
    }
    await new Promise((r) => setTimeout(r, 5));
  }
  return pending;
}

const windows: Array<{ phase: string; t: number; p99: number; ok: number; refused: number; other: number }> =
  [];
let lastCut = performance.now();
async function report(name: string, t: number) {
  const now = performance.now();
  const w = all.filter((r) => r.at > lastCut && r.at <= now);
  lastCut = now;
  const ok = w.filter((r) => r.status === 200).map((r) => r.ms);
  const refused = w.filter((r) => r.status === 429 || r.status === 503).length;
  const other = w.length - ok.length - refused;
  windows.push({ phase: name, t, p99: pct(ok, 99), ok: ok.length, refused, other });
  const pools = await fetch(`${g.url}/admin/v1/pools`, {
    headers: { authorization: `Bearer ${adminToken}` },
    signal: AbortSignal.timeout(2_000),
  })
    .then((r) => r.json() as Promise<{ data: Array<{ id: string; queued: number; in_flight: number }> }>)
    .catch(() => ({ data: [] }));
  const q = pools.data
    .filter((p) => ['openai', 'anthropic', 'gemini'].includes(p.id))
    .map((p) => `${p.id} ${p.queued}q/${p.in_flight}`);
  maxQueued = Math.max(maxQueued, ...pools.data.map((p) => p.queued));
  console.log(
    `${name.padEnd(9)} ${t.toFixed(0).padStart(4)} s  ok ${String(ok.length).padStart(4)} (p50 ${pct(ok, 50).toFixed(0)} p99 ${pct(ok, 99).toFixed(0)} ms)  429/503 ${String(refused).padStart(4)}  other ${other}  client in flight ${inFlight}  pools ${q.join(' ')}`,
  );
}
let maxQueued = 0;

// 2. baseline at half the capacity.
const base = capacity / 2;
await Promise.all(await openLoop('baseline', base, BASELINE_S));
const baseP99 = pct(
  all.filter((r) => r.phase === 'baseline' && r.status === 200).map((r) => r.ms),
  99,
);
// 3. overload.
const offered = capacity * factor;
const overloadPending = await openLoop('overload', offered, minutes * 60);
const overEnd = performance.now();
// 4. recovery at half the capacity: until 3 windows in a row have p99 ≤ 2× baseline and no refusal.
let recoveredAt: number | undefined;
const recovered = () => {
  const rec = windows.filter((w) => w.phase === 'recovery');
  const last3 = rec.slice(-3);
  const good = (w: (typeof rec)[number]) =>
    w.ok > 0 && w.refused === 0 && w.other === 0 && w.p99 <= 2 * baseP99;
  if (last3.length === 3 && last3.every(good)) {
    recoveredAt ??= (last3[0]?.t ?? 0) - 1;
    return true;
  }
  return false;
};
const recoveryPending = await openLoop('recovery', base, RECOVERY_MAX_S, recovered);
await Promise.all([...overloadPending, ...recoveryPending]);

// Billing caught up: every accepted answer's success event, exactly once.
const accepted = all.filter((r) => r.status === 200 && r.complete && r.id).map((r) => r.id as string);
const count = async () =>
  (
    await sql.query<{ request_id: string; n: string }>(
      "SELECT request_id, count(*)::text AS n FROM usage_events WHERE outcome = 'success' AND request_id = ANY($1) GROUP BY 1",
      [accepted],
    )
  ).rows;
let rows = await count();
for (const end = Date.now() + 120_000; rows.length < new Set(accepted).size && Date.now() < end; ) {
  await new Promise((r) => setTimeout(r, 500));
  rows = await count();
}
const billedOnce = rows.filter((r) => r.n === '1').length;
const billedTwice = rows.filter((r) => Number(r.n) > 1).length;
const ledger = (
  await sql.query<{ unbalanced: string; total: string; drift: string }>(
    `SELECT (SELECT count(*) FROM (SELECT 1 FROM journal_entries GROUP BY transaction_id HAVING sum(amount_micros) <> 0) x)::text AS unbalanced,
            (SELECT coalesce(sum(amount_micros), 0) FROM journal_entries)::text AS total,
            (SELECT count(*) FROM ledger_accounts l LEFT JOIN (SELECT ledger_account_id, sum(amount_micros) s FROM journal_entries GROUP BY 1) e ON e.ledger_account_id = l.id WHERE l.balance_micros <> coalesce(e.s, 0))::text AS drift`,
  )
).rows[0];
// Holds of answered requests are dropped at settlement; give billing's sweep time for the rest.
let holdsLeft = '?';
for (const end = Date.now() + 60_000; Date.now() < end; ) {
  holdsLeft = (
    await sql.query<{ n: string }>('SELECT count(*)::text AS n FROM holds WHERE expires_at < now()')
  ).rows[0]!.n;
  if (holdsLeft === '0') break;
  await new Promise((r) => setTimeout(r, 1000));
}

const over = all.filter((r) => r.phase === 'overload');
const by = new Map<string, number>();
for (const r of over) {
  const k = r.status === 0 ? `no answer (${r.error})` : `${r.status}${r.error ? ` ${r.error}` : ''}`;
  by.set(k, (by.get(k) ?? 0) + 1);
}
const refusals = over.filter((r) => r.status === 429 || r.status === 503);
const withRetryAfter = refusals.filter((r) => r.retryAfter !== undefined).length;
const okOver = over.filter((r) => r.status === 200).map((r) => r.ms);
const timeouts = all.filter((r) => r.status === 0 && /timeout|abort/i.test(r.error ?? '')).length;
const bad5xx = all.filter((r) => r.status >= 500 && r.status !== 503).length;
console.log(`\n════ overload summary`);
console.log(
  `capacity ${capacity.toFixed(1)} answers/s; offered ${offered.toFixed(0)} req/s (${factor}×) for ${minutes} min: ${over.length} requests`,
);
console.log(
  `answers during the overload: ${[...by]
    .sort((a, b) => b[1] - a[1])
    .map(([k, n]) => `${k}: ${n}`)
    .join(', ')}`,
);
console.log(
  `accepted during the overload: ${okOver.length} (${(okOver.length / (minutes * 60)).toFixed(1)}/s), p50 ${pct(okOver, 50).toFixed(0)} ms, p99 ${pct(okOver, 99).toFixed(0)} ms (baseline at ½ capacity: p99 ${baseP99.toFixed(0)} ms)`,
);
console.log(
  `refused with 429/503: ${refusals.length}, with retry-after: ${withRetryAfter}; timeouts (no answer in ${TIMEOUT_MS / 1000} s): ${timeouts}; other 5xx: ${bad5xx}; largest pool queue seen: ${maxQueued}`,
);
console.log(
  `nothing lost: ${accepted.length} accepted answers, ${billedOnce} billed exactly once, ${billedTwice} more than once, ${new Set(accepted).size - rows.length} not billed; ledger: ${ledger?.unbalanced} unbalanced transactions, global sum ${ledger?.total}, ${ledger?.drift} balances drifted; ${holdsLeft} expired holds left`,
);
console.log(
  `recovery: ${recoveredAt === undefined ? `NOT within ${RECOVERY_MAX_S} s` : `${recoveredAt.toFixed(0)} s after the load dropped to ½ capacity (3 windows in a row of p99 ≤ 2× baseline, no refusal)`}; overload ended ${((performance.now() - overEnd) / 1000).toFixed(0)} s ago`,
);
await sql.end();
await g.stop();
