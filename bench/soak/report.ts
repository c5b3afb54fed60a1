/**
 * The soak's report: its samples as a CSV, the SVG plot, and the trend verdict. Also a command, to
 * plot and judge a CSV again (e.g. with another warm-up):
 *
 *   node bench/soak/report.ts <soak-….csv> [--warmup-minutes 5] [--title "…"] [--out file.svg]
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { chart, type Panel } from './svg.ts';

export interface Sample {
  /** Seconds since the load started. */
  t: number;
  values: Record<string, number>;
}

/** Least-squares slope per hour, and the peaks of the first and last thirds (RSS is a GC sawtooth). */
function trend(points: Array<[number, number]>) {
  const pts = points.filter(([, y]) => Number.isFinite(y));
  const n = pts.length;
  if (n < 3) return { slopePerHour: Number.NaN, first: Number.NaN, last: Number.NaN };
  const mx = pts.reduce((a, [x]) => a + x, 0) / n;
  const my = pts.reduce((a, [, y]) => a + y, 0) / n;
  const num = pts.reduce((a, [x, y]) => a + (x - mx) * (y - my), 0);
  const den = pts.reduce((a, [x]) => a + (x - mx) ** 2, 0);
  const third = Math.max(1, Math.floor(n / 3));
  const peak = (a: Array<[number, number]>) => Math.max(...a.map(([, y]) => y));
  return {
    slopePerHour: (num / den) * 3600,
    first: peak(pts.slice(0, third)),
    last: peak(pts.slice(-third)),
  };
}

export interface ReportInput {
  samples: Sample[];
  columns: string[];
  title: string;
  warmupMin: number;
  outDir: string;
  /** The gateway's own processes (judged for leaks); others (the fake, Redis) are shown, not judged. */
  gateway: string[];
  /** Write no CSV (re-plotting one). */
  csv?: boolean;
  svgPath?: string;
}

export function writeReport(r: ReportInput): {
  leak: boolean;
  lines: string[];
  csvPath: string;
  svgPath: string;
} {
  const { samples, columns } = r;
  mkdirSync(r.outDir, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19);
  const csvPath = join(r.outDir, `soak-${stamp}.csv`);
  const svgPath = r.svgPath ?? join(r.outDir, `soak-${stamp}.svg`);
  if (r.csv !== false)
    writeFileSync(
      csvPath,
      `${[
        ['t_s', ...columns].join(','),
        ...samples.map((s) =>
          [
            s.t.toFixed(1),
            ...columns.map((c) => (Number.isFinite(s.values[c]) ? String(s.values[c]) : '')),
          ].join(','),
        ),
      ].join('\n')}\n`,
    );
  const series = (col: string, name = col, scale = 1) => ({
    name,
    points: samples.map((s) => [s.t / 60, (s.values[col] ?? Number.NaN) * scale] as [number, number]),
  });
  const byPrefix = (prefix: string) =>
    columns.filter((c) => c.startsWith(prefix)).map((c) => series(c, c.slice(prefix.length)));
  const panels: Panel[] = [
    {
      title: 'Latency of complete answers',
      unit: 'ms',
      series: [series('p50_ms', 'p50'), series('p99_ms', 'p99')],
    },
    {
      title: 'Throughput and errors',
      unit: 'per second / per sample',
      series: [
        series('rps', 'answers/s'),
        series('errors', 'errors'),
        series('client_failures', 'client failures'),
      ],
    },
    { title: 'RSS per process', unit: 'MiB', series: byPrefix('rss_mib:') },
    { title: 'Event-loop lag p99', unit: 'ms', series: byPrefix('lag_p99_ms:') },
    { title: 'Open handles', unit: 'count', series: byPrefix('handles:') },
    {
      title: 'Redis',
      unit: 'MiB / thousand keys',
      series: [
        series('redis_used_mib', 'used memory MiB'),
        series('redis_keys', 'keys (thousands)', 1 / 1000),
      ],
    },
    {
      title: 'Postgres',
      unit: 'MiB / thousand rows',
      series: [
        series('pg_mib', 'database MiB'),
        series('usage_events', 'usage events (k)', 1 / 1000),
        series('journal_entries', 'journal entries (k)', 1 / 1000),
      ],
    },
  ];
  writeFileSync(svgPath, chart({ title: r.title, xLabel: 'minutes since the load started', panels }));

  const post = samples.filter((s) => s.t >= r.warmupMin * 60);
  const lines = [
    `trend after ${r.warmupMin} min of warm-up (peak of the first third → peak of the last third):`,
  ];
  let leak = false;
  const judge = (
    col: string,
    label: string,
    unit: string,
    tolerance: (first: number) => number,
    judged: boolean,
  ) => {
    const tr = trend(post.map((s) => [s.t, s.values[col] ?? Number.NaN]));
    if (!Number.isFinite(tr.first)) return;
    const grows = tr.last - tr.first > tolerance(tr.first);
    if (grows && judged) leak = true;
    const verdict = grows ? (judged ? 'GROWS' : 'grows (not judged: see below)') : 'flat';
    lines.push(
      `  ${label.padEnd(26)} ${tr.first.toFixed(1).padStart(9)} → ${tr.last.toFixed(1).padStart(9)} ${unit.padEnd(3)}  slope ${tr.slopePerHour >= 0 ? '+' : ''}${tr.slopePerHour.toFixed(1)} ${unit}/h  ${verdict}`,
    );
  };
  for (const c of columns.filter((c) => c.startsWith('rss_mib:'))) {
    const name = c.slice(8);
    judge(c, `RSS ${name}`, 'MiB', (first) => Math.max(10, first * 0.05), r.gateway.includes(name));
  }
  for (const c of columns.filter((c) => c.startsWith('handles:')))
    judge(c, `handles ${c.slice(8)}`, '', (first) => Math.max(10, first * 0.1), true);
  judge('redis_used_mib', 'Redis used memory', 'MiB', (first) => Math.max(5, first * 0.1), false);
  judge('redis_keys', 'Redis keys', '', (first) => Math.max(200, first * 0.1), false);
  lines.push(
    `leak verdict: ${leak ? 'GROWTH FOUND in a gateway process (see above)' : "flat: no gateway process's RSS peak or open handles grow after warm-up"}`,
    'not judged: the fake provider keeps a log of every call it served (its memory grows by design); Redis keeps',
    'each async job and its frames for STREAM_TTL_SECONDS (default a day), so its memory grows until jobs expire.',
  );
  return { leak, lines, csvPath, svgPath };
}

// ─── command: plot and judge a CSV again ────────────────────────────────────────────────────────
if (import.meta.url === `file://${process.argv[1]}`) {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      'warmup-minutes': { type: 'string', default: '5' },
      title: { type: 'string', default: 'Faregate soak' },
      out: { type: 'string' },
    },
  });
  const file = positionals[0];
  if (!file) {
    console.error(
      'usage: node bench/soak/report.ts <soak-….csv> [--warmup-minutes 5] [--title "…"] [--out file.svg]',
    );
    process.exit(2);
  }
  const [head, ...rows] = readFileSync(file, 'utf8').trim().split('\n');
  const cols = (head ?? '').split(',');
  const columns = cols.slice(1);
  const samples = rows.map((line) => {
    const cells = line.split(',');
    const values: Record<string, number> = {};
    columns.forEach((c, i) => {
      const v = cells[i + 1];
      values[c] = v === undefined || v === '' ? Number.NaN : Number(v);
    });
    return { t: Number(cells[0]), values };
  });
  const gateway = columns
    .filter((c) => c.startsWith('rss_mib:'))
    .map((c) => c.slice(8))
    .filter((n) => n !== 'fake' && n !== 'redis');
  const out = writeReport({
    samples,
    columns,
    title: values.title,
    warmupMin: Number(values['warmup-minutes']),
    outDir: dirname(file),
    gateway,
    csv: false,
    svgPath: values.out ?? join(dirname(file), basename(file).replace(/\.csv$/, '.svg')),
  });
  for (const l of out.lines) console.log(l);
  console.log(`wrote ${out.svgPath}`);
}
