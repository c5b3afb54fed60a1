import { type LoadResult, median, percentile } from '../support/load.ts';

export interface PhaseResult {
  run: number;
  concurrency: number;
  target: 'direct' | 'gateway';
  result: LoadResult;
  /** CPU ms per process during the measurement (see support/cpu.ts). */
  cpu: Record<string, number>;
}

const TARGET_ADDED_P50_MS = 2;
/** Processes shown in the CPU breakdown; workers of one pool are summed. */
const CPU_COLUMNS = ['ingress', 'worker', 'billing', 'redis', 'postgres', 'fake'] as const;

const ms = (v: number) => (Number.isFinite(v) ? v.toFixed(2) : '–');
const x = (v: number) => (Number.isFinite(v) ? `${v.toFixed(2)}×` : '–');
const rate = (v: number) => (Number.isFinite(v) ? Math.round(v).toLocaleString('en-US') : '–');

/** CPU ms per successful request, per process group, plus the server-side total (client excluded). */
function cpuPerRequest(p: PhaseResult): Record<string, number> {
  const n = p.result.latenciesMs.length;
  const out: Record<string, number> = {};
  for (const [name, v] of Object.entries(p.cpu)) {
    const group = name.startsWith('worker:') ? 'worker' : name;
    out[group] = (out[group] ?? 0) + v / n;
  }
  out.total = Object.entries(out)
    .filter(([k]) => k !== 'bench-client')
    .reduce((s, [, v]) => s + v, 0);
  return out;
}

export function printPhase(p: PhaseResult): void {
  const lat = p.result.latenciesMs;
  const cpu = cpuPerRequest(p);
  const shown = [...CPU_COLUMNS, 'total'].filter((k) => cpu[k] !== undefined && cpu[k] > 0);
  console.log(
    `run ${p.run}  c=${String(p.concurrency).padEnd(3)} ${p.target.padEnd(7)}  n=${String(lat.length).padEnd(6)}` +
      ` p50 ${ms(percentile(lat, 50))} ms  p99 ${ms(percentile(lat, 99))} ms  ${rate(p.result.rps)} req/s` +
      `  cpu ms/req: ${shown.map((k) => `${k} ${cpu[k]!.toFixed(3)}`).join(', ')}`,
  );
}

interface Row {
  concurrency: number;
  direct: { p50: number; p99: number; rps: number };
  gateway: { p50: number; p99: number; rps: number };
  addedP50: number;
  addedP99: number;
  p50Ratio: number;
  p99Ratio: number;
  rpsRatio: number;
  cpu: Record<string, number>;
}

/** Medians across runs; differences and ratios are taken within a run, then their median. */
function summarize(results: PhaseResult[], concurrency: number): Row {
  const runs = [...new Set(results.map((r) => r.run))];
  const pick = (run: number, target: 'direct' | 'gateway') =>
    results.find((r) => r.run === run && r.concurrency === concurrency && r.target === target)!;
  const per = runs.map((run) => {
    const d = pick(run, 'direct');
    const g = pick(run, 'gateway');
    const stat = (p: PhaseResult) => ({
      p50: percentile(p.result.latenciesMs, 50),
      p99: percentile(p.result.latenciesMs, 99),
      rps: p.result.rps,
    });
    return { d: stat(d), g: stat(g), cpu: cpuPerRequest(g) };
  });
  const m = (f: (r: (typeof per)[number]) => number) => median(per.map(f));
  const cpuKeys = [...new Set(per.flatMap((r) => Object.keys(r.cpu)))];
  return {
    concurrency,
    direct: { p50: m((r) => r.d.p50), p99: m((r) => r.d.p99), rps: m((r) => r.d.rps) },
    gateway: { p50: m((r) => r.g.p50), p99: m((r) => r.g.p99), rps: m((r) => r.g.rps) },
    addedP50: m((r) => r.g.p50 - r.d.p50),
    addedP99: m((r) => r.g.p99 - r.d.p99),
    p50Ratio: m((r) => r.g.p50 / r.d.p50),
    p99Ratio: m((r) => r.g.p99 / r.d.p99),
    rpsRatio: m((r) => r.g.rps / r.d.rps),
    cpu: Object.fromEntries(cpuKeys.map((k) => [k, m((r) => r.cpu[k] ?? 0)])),
  };
}

export function printSummary(
  results: PhaseResult[],
  ctx: { runs: number; levels: number[]; workers: number; load: string },
): void {
  const rows = ctx.levels.map((c) => summarize(results, c));
  const of = ctx.runs > 1 ? `medians of ${ctx.runs} runs` : '1 run';
  console.log(`\n### Gateway latency (${of}; ${ctx.workers} worker process(es); load average ${ctx.load})\n`);
  console.log(
    '| connections | direct p50 / p99 (ms) | direct req/s | gateway p50 / p99 (ms) | gateway req/s | added p50 / p99 (ms) | ratio p50 / p99 | req/s ratio |',
  );
  console.log('|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const r of rows) {
    console.log(
      `| ${r.concurrency} | ${ms(r.direct.p50)} / ${ms(r.direct.p99)} | ${rate(r.direct.rps)} | ` +
        `${ms(r.gateway.p50)} / ${ms(r.gateway.p99)} | ${rate(r.gateway.rps)} | ` +
        `+${ms(r.addedP50)} / +${ms(r.addedP99)} | ${x(r.p50Ratio)} / ${x(r.p99Ratio)} | ${x(r.rpsRatio)} |`,
    );
  }

  console.log('\nCPU per gateway request (ms, all processes; the bench client excluded):\n');
  console.log(`| connections | ${CPU_COLUMNS.join(' | ')} | total |`);
  console.log(`|---:|${CPU_COLUMNS.map(() => '---:|').join('')}---:|`);
  for (const r of rows) {
    console.log(`| ${r.concurrency} | ${[...CPU_COLUMNS, 'total'].map((k) => ms3(r.cpu[k])).join(' | ')} |`);
  }

  const single = rows.find((r) => r.concurrency === 1);
  if (single) {
    const ok = single.addedP50 <= TARGET_ADDED_P50_MS;
    console.log(
      `\nadded p50 at 1 connection: ${ms(single.addedP50)} ms (target ≤ ${TARGET_ADDED_P50_MS} ms): ${ok ? 'met' : 'NOT met'}`,
    );
  }
}

function ms3(v: number | undefined): string {
  return v === undefined || !Number.isFinite(v) ? '–' : v.toFixed(3);
}
