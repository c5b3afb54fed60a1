/**
 * Stream-parser throughput: `node bench/parse/parse.ts [MB per adapter, default 64] [runs, default 5]`.
 * Builds a large SSE body per adapter in memory out of its recorded fixture events (many small text
 * deltas, like real token streams), feeds it in 16 KiB network-sized chunks, and prints the median
 * MB/s and events/s. Target: ≥ 50 MB/s of SSE per core.
 */
import { readFileSync } from 'node:fs';
import { anthropicAdapter } from '../../packages/providers/src/anthropic/index.ts';
import { geminiAdapter } from '../../packages/providers/src/gemini/index.ts';
import { openaiAdapter } from '../../packages/providers/src/openai/index.ts';
import type { ProviderAdapter } from '../../packages/providers/src/types.ts';

const MB = 1024 * 1024;
const targetMb = Number(process.argv[2] ?? 64);
const runs = Number(process.argv[3] ?? 5);
const CHUNK = 16 * 1024;

const fixture = (dir: string) =>
  readFileSync(new URL(`../../packages/providers/src/${dir}/fixtures/stream.sse`, import.meta.url), 'utf8');

/** Splits a transcript into events and returns [head, repeatable text-delta events, tail]. */
function parts(text: string, isDelta: (event: string) => boolean): [string, string[], string] {
  const events = text
    .split('\n\n')
    .filter((e) => e.trim() !== '')
    .map((e) => `${e}\n\n`);
  const first = events.findIndex(isDelta);
  let last = first;
  while (last + 1 < events.length && isDelta(events[last + 1] ?? '')) last++;
  return [events.slice(0, first).join(''), events.slice(first, last + 1), events.slice(last + 1).join('')];
}

interface Case {
  name: string;
  adapter: ProviderAdapter;
  body: string;
}

function build(name: string, adapter: ProviderAdapter, dir: string, isDelta: (e: string) => boolean): Case {
  const [head, deltas, tail] = parts(fixture(dir), isDelta);
  const unit = deltas.join('');
  const reps = Math.ceil((targetMb * MB) / unit.length);
  return { name, adapter, body: head + unit.repeat(reps) + tail };
}

const cases: Case[] = [
  build('openai', openaiAdapter, 'openai', (e) => e.includes('"delta":{"content"')),
  build('anthropic', anthropicAdapter, 'anthropic', (e) => e.includes('text_delta')),
  // Gemini's last chunk carries finishReason; the repeated unit is the first (delta-only) chunk.
  build('gemini', geminiAdapter, 'gemini', (e) => !e.includes('finishReason')),
];

function once(c: Case): { seconds: number; events: number } {
  const parser = c.adapter.createStreamParser({ model: 'bench' });
  let events = 0;
  let last = '';
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < c.body.length; i += CHUNK) {
    const out = parser.push(c.body.slice(i, i + CHUNK));
    events += out.length;
    if (out.length > 0) last = out[out.length - 1]?.type ?? last;
  }
  const end = parser.finish();
  events += end.length;
  if (end.length > 0) last = end[end.length - 1]?.type ?? last;
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  if (last !== 'end') throw new Error(`${c.name}: the benchmark stream did not end cleanly (${last})`);
  return { seconds, events };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;

const rows: string[][] = [['adapter', 'MB', 'MB/s', 'events/s', 'runs']];
for (const c of cases) {
  once(c); // warm-up (JIT)
  const results = Array.from({ length: runs }, () => once(c));
  const mb = c.body.length / MB;
  const mbps = median(results.map((r) => mb / r.seconds));
  const eps = median(results.map((r) => r.events / r.seconds));
  rows.push([c.name, mb.toFixed(0), mbps.toFixed(1), Math.round(eps).toLocaleString('en-US'), String(runs)]);
}
const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? [];
for (const r of rows) console.log(r.map((cell, i) => cell.padStart(widths[i] ?? 0)).join('  '));
