import { type SpendGroup, SpendReport, type SpendRow } from '@faregate/contracts/admin-views';
import {
  BarController,
  BarElement,
  CategoryScale,
  Chart,
  type ChartDataset,
  Legend,
  LinearScale,
  Tooltip,
} from 'chart.js';
import { useEffect, useRef, useState } from 'preact/hooks';
import { api } from './api.ts';
import { Problem } from './parts.tsx';
import { usePolled } from './poll.ts';

Chart.register(BarController, BarElement, CategoryScale, LinearScale, Legend, Tooltip);

const REFRESH_MS = 10_000;
/** Groups drawn as their own series; the rest are summed as "other". */
const SERIES = 8;
const COLORS = [
  '#2563eb',
  '#16a34a',
  '#dc2626',
  '#9333ea',
  '#ea580c',
  '#0891b2',
  '#ca8a04',
  '#db2777',
  '#6b7280',
];
const GROUPS: { id: SpendGroup; label: string }[] = [
  { id: 'day', label: 'Day' },
  { id: 'account', label: 'Account' },
  { id: 'key', label: 'Key' },
  { id: 'model', label: 'Model' },
];

const name = (r: SpendRow) => (r.label ? `${r.label} (${r.group})` : r.group);

/** Days in the window, oldest first, as the API spells them (UTC). */
function daysOf(n: number): string[] {
  const out: string[] = [];
  const now = new Date();
  for (let i = n - 1; i >= 0; i--) {
    const d = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate() - i));
    out.push(d.toISOString().slice(0, 10));
  }
  return out;
}

export interface Totals {
  group: string;
  name: string;
  requests: number;
  micros: bigint;
  /** Calls made for requests that had ended already (Redis lost their end), charged to no one. */
  reruns: number;
  rerunMicros: bigint;
}

export function totalsByGroup(rows: SpendRow[]): Totals[] {
  const m = new Map<string, Totals>();
  for (const r of rows) {
    const t = m.get(r.group) ?? {
      group: r.group,
      name: name(r),
      requests: 0,
      micros: 0n,
      reruns: 0,
      rerunMicros: 0n,
    };
    t.requests += r.requests;
    t.micros += BigInt(r.cost_micros);
    t.reruns += r.rerun_calls;
    t.rerunMicros += BigInt(r.rerun_cost_micros);
    m.set(r.group, t);
  }
  return [...m.values()].sort((a, b) => (b.micros > a.micros ? 1 : b.micros < a.micros ? -1 : 0));
}

const usd = (micros: bigint) => `$${(Number(micros) / 1e6).toFixed(micros < 10_000n ? 6 : 2)}`;

function datasets(rows: SpendRow[], days: string[], totals: Totals[]): ChartDataset<'bar', number[]>[] {
  const shown = totals.slice(0, SERIES).map((t) => t.group);
  const series = new Map<string, number[]>(shown.map((g) => [g, days.map(() => 0)]));
  const other = days.map(() => 0);
  for (const r of rows) {
    const i = days.indexOf(r.day);
    if (i < 0) continue;
    const s = series.get(r.group) ?? other;
    s[i] = (s[i] ?? 0) + Number(r.cost_micros) / 1e6;
  }
  const out = shown.map((g, i) => ({
    label: totals.find((t) => t.group === g)?.name ?? g,
    data: series.get(g) ?? [],
    backgroundColor: COLORS[i % COLORS.length],
  }));
  if (totals.length > SERIES) out.push({ label: 'other', data: other, backgroundColor: COLORS[8] });
  return out;
}

/** Spend per day as stacked bars by account, key or model, with the window's totals. */
export function Spend() {
  const [group, setGroup] = useState<SpendGroup>('model');
  const [days, setDays] = useState(30);
  const spend = usePolled(
    () => api.get(SpendReport, `/admin/v1/spend?group=${group}&days=${days}`),
    REFRESH_MS,
    [group, days],
  );
  const canvas = useRef<HTMLCanvasElement>(null);
  const chart = useRef<Chart<'bar', number[], string>>(undefined);
  const rows = spend.data?.data ?? [];
  const totals = totalsByGroup(rows);

  useEffect(() => {
    if (!canvas.current || !spend.data) return;
    const labels = daysOf(days);
    const data = { labels, datasets: datasets(rows, labels, totals) };
    if (chart.current) {
      chart.current.data = data;
      chart.current.update('none');
      return;
    }
    chart.current = new Chart<'bar', number[], string>(canvas.current, {
      type: 'bar',
      data,
      options: {
        animation: false,
        maintainAspectRatio: false,
        scales: {
          x: { stacked: true },
          y: {
            stacked: true,
            beginAtZero: true,
            title: { display: true, text: 'USD' },
            ticks: { callback: (v) => `$${Number(v).toPrecision(2)}` },
          },
        },
        plugins: { legend: { position: 'bottom' } },
      },
    });
  });
  useEffect(() => () => chart.current?.destroy(), []);

  return (
    <section aria-labelledby="spend-h">
      <h2 id="spend-h">Spend</h2>
      <div class="controls">
        <fieldset>
          <legend>By</legend>
          {GROUPS.map((g) => (
            <label key={g.id}>
              <input
                type="radio"
                name="group"
                value={g.id}
                checked={group === g.id}
                onChange={() => setGroup(g.id)}
              />
              {g.label}
            </label>
          ))}
        </fieldset>
        <label>
          Days{' '}
          <select value={String(days)} onChange={(e) => setDays(Number(e.currentTarget.value))}>
            {[7, 30, 90].map((d) => (
              <option key={d} value={String(d)}>
                {d}
              </option>
            ))}
          </select>
        </label>
      </div>
      <Problem text={spend.error} />
      <div class="chart">
        <canvas ref={canvas} aria-label={`Spend per day by ${group}`} role="img" />
      </div>
      <table class="spend-totals">
        <thead>
          <tr>
            <th scope="col">{GROUPS.find((g) => g.id === group)?.label}</th>
            <th scope="col">Requests</th>
            <th scope="col">Spend</th>
            <th
              scope="col"
              title="Calls made again for requests that had ended (Redis lost the writes that ended them): paid to the provider, charged to no one"
            >
              Re-runs, not charged
            </th>
          </tr>
        </thead>
        <tbody>
          {totals.map((t) => (
            <tr key={t.group} data-group={t.group}>
              <th scope="row">{t.name}</th>
              <td>{t.requests}</td>
              <td data-col="cost">{usd(t.micros)}</td>
              <td data-col="reruns">{t.reruns > 0 ? `${t.reruns} (${usd(t.rerunMicros)})` : '—'}</td>
            </tr>
          ))}
          {spend.data && totals.length === 0 && (
            <tr>
              <td colSpan={4}>No spend in the last {days} days.</td>
            </tr>
          )}
        </tbody>
      </table>
    </section>
  );
}
