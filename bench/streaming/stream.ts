/**
 * Streaming benchmark: what the gateway adds to time-to-first-token, how many deltas one ingress
 * relays per second, and how many concurrent streams one ingress carries without losing a frame
 * (with its memory per connection). Spawns the real services (bench/support/stack.ts) against the
 * local Redis and Postgres (REDIS_URL / DATABASE_URL), loopback only; stops by itself.
 *
 *   node bench/streaming/stream.ts [--samples 300] [--runs 3] [--streams 250,500,1000,2000]
 */
import { cpus, loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { configureFake, startBenchStack } from '../support/stack.ts';
import { sseFirstToken, WsFirstToken } from './ttft.ts';
import { type JobOutcome, openMany, RelayCounter, rssBytes, type VerifyingSocket } from './ws-load.ts';

const HELP = `usage: node bench/streaming/stream.ts [options]
  --samples N   first-token samples per path (default 300, after 200 warm-up)
  --runs N      repetitions of the relay measurements; medians are printed (default 3)
  --jobs N      concurrent jobs in the relay measurement (default 200)
  --streams L   comma-separated concurrent-stream steps, each one socket per stream (default 250,500,1000,2000)`;

const { values: argv } = parseArgs({
  options: {
    samples: { type: 'string', default: '300' },
    runs: { type: 'string', default: '3' },
    jobs: { type: 'string', default: '200' },
    streams: { type: 'string', default: '250,500,1000,2000' },
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
const samples = positive('samples', argv.samples);
const runs = positive('runs', argv.runs);
const relayJobs = positive('jobs', argv.jobs);
const steps = argv.streams.split(',').map((s) => positive('streams', s.trim()));
const WARMUP = 200;
const SOCKETS = 10;
/** Per step: a stream lasts ~4 s; anything not finished by then counts as lost. */
const STEP_DEADLINE_MS = 90_000;
const MODEL = 'gpt-4o-mini';

const pct = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
const median = (xs: number[]) =>
  pct(
    [...xs].sort((a, b) => a - b),
    50,
  );
const ms = (x: number) => `${x.toFixed(2)} ms`;
const int = (x: number) => Math.round(x).toLocaleString('en-US');
const mib = (b: number) => `${(b / 1024 / 1024).toFixed(1)} MiB`;
const kib = (b: number) => `${(b / 1024).toFixed(1)} KiB`;
const request = (content: string) => ({ model: MODEL, messages: [{ role: 'user', content }] });

console.log(`$ node bench/streaming/stream.ts ${process.argv.slice(2).join(' ')}`.trimEnd());
console.log(
  `node ${process.version}, ${cpus().length} cores (${cpus()[0]?.model.trim()}), load ${loadavg()
    .map((l) => l.toFixed(2))
    .join(' ')}`,
);

const maxStreams = Math.max(...steps, relayJobs);
const stack = await startBenchStack({
  workers: 1,
  env: {
    // One worker runs every stream of the largest step at once, so the ingress is what is measured.
    WORKER_CONCURRENCY: String(maxStreams + 100),
    STREAM_TTL_SECONDS: '900',
  },
});
const ingressPid = stack.services.find((s) => s.name === 'ingress')?.pid ?? 0;
const rows: Array<[string, string, string]> = [];
let failed = false;

try {
  // 1. Time to first token, one request at a time, the three paths interleaved so noise hits all alike.
  await configureFake(stack.fakeUrl, { firstByteMs: 0, chunkMs: 0, tokens: 16, tokensPerChunk: 1 });
  const direct: number[] = [];
  const sse: number[] = [];
  const ws: number[] = [];
  const wsAck: number[] = [];
  const gwHeaders = { authorization: `Bearer ${stack.apiKey}` };
  const fakeHeaders = { authorization: 'Bearer sk-bench' };
  const wsClient = await WsFirstToken.open(stack.url, stack.apiKey);
  for (let i = 0; i < WARMUP + samples; i++) {
    const d = await sseFirstToken(`${stack.fakeUrl}/openai/v1/chat/completions`, fakeHeaders, MODEL);
    const g = await sseFirstToken(`${stack.url}/v1/chat/completions`, gwHeaders, MODEL);
    const w = await wsClient.once(MODEL);
    if (i < WARMUP) continue;
    direct.push(d);
    sse.push(g);
    ws.push(w.firstMs);
    wsAck.push(w.ackMs);
  }
  wsClient.close();
  for (const xs of [direct, sse, ws, wsAck]) xs.sort((a, b) => a - b);
  rows.push(['first token, fake directly (SSE)', `p50 ${ms(pct(direct, 50))}`, `p99 ${ms(pct(direct, 99))}`]);
  rows.push(['first token via gateway (SSE)', `p50 ${ms(pct(sse, 50))}`, `p99 ${ms(pct(sse, 99))}`]);
  rows.push(['first token via gateway (WS submit)', `p50 ${ms(pct(ws, 50))}`, `p99 ${ms(pct(ws, 99))}`]);
  rows.push([
    '  of which admission (WS submit → ack)',
    `p50 ${ms(pct(wsAck, 50))}`,
    `p99 ${ms(pct(wsAck, 99))}`,
  ]);
  const addedSse = pct(sse, 50) - pct(direct, 50);
  rows.push([
    'added by the gateway (SSE)',
    `p50 +${ms(addedSse)}${addedSse <= 2 ? ' (target ≤ 2 ms: met)' : ' (target ≤ 2 ms: MISSED)'}`,
    `p99 +${ms(pct(sse, 99) - pct(direct, 99))}`,
  ]);
  rows.push([
    'added by the gateway (WS submit)',
    `p50 +${ms(pct(ws, 50) - pct(direct, 50))}`,
    `p99 +${ms(pct(ws, 99) - pct(direct, 99))}`,
  ]);

  // 2. Deltas relayed per second: live (workers writing while the ingress relays) and replay
  //    (finished jobs read back from their streams: the ingress alone).
  await configureFake(stack.fakeUrl, { chunkMs: 2, tokens: 300, tokensPerChunk: 1 });
  const live: number[] = [];
  const liveTokens: number[] = [];
  const replay: number[] = [];
  let lost = 0;
  for (let r = 0; r < runs; r++) {
    const counter = new RelayCounter();
    const socks = await openMany(SOCKETS, stack.url, stack.apiKey, counter);
    const outcomes = await Promise.all(
      Array.from({ length: relayJobs }, (_, i) => socks[i % SOCKETS]!.submit(request(`relay ${r} ${i}`))),
    );
    const secs = (counter.lastAt - counter.firstAt) / 1000;
    live.push(counter.deltas / secs);
    liveTokens.push(outcomes.reduce((s, o) => s + o.tokens, 0) / secs);
    lost += badOutcomes(outcomes);

    const rc = new RelayCounter();
    const readers = await openMany(SOCKETS, stack.url, stack.apiKey, rc);
    const replayed = await Promise.all(outcomes.map((o, i) => readers[i % SOCKETS]!.subscribe(o.job, 0)));
    replay.push(rc.frames / ((rc.lastAt - rc.firstAt) / 1000));
    lost += badOutcomes(replayed);
    for (const s of [...socks, ...readers]) s.close();
  }
  rows.push([
    `delta frames relayed/s, live (${relayJobs} jobs, ${SOCKETS} sockets)`,
    int(median(live)),
    `${int(median(liveTokens))} tokens/s`,
  ]);
  rows.push([
    `frames relayed/s, replay of finished jobs`,
    int(median(replay)),
    lost === 0 ? 'no frame lost' : `${lost} BAD`,
  ]);
  if (lost > 0) failed = true;

  // 3. Concurrent streams, one socket each, all streaming at once (~4 s each at 5 tokens/s).
  await configureFake(stack.fakeUrl, { chunkMs: 200, tokens: 20, tokensPerChunk: 1 });
  let sustained = 0;
  // The heap does not shrink between steps, so memory per stream is measured from before the first step.
  const base0 = (await rssBytes(ingressPid)) ?? 0;
  for (const n of steps) {
    const base = (await rssBytes(ingressPid)) ?? 0;
    let socks: VerifyingSocket[] = [];
    try {
      socks = await openMany(n, stack.url, stack.apiKey);
      const idle = (await rssBytes(ingressPid)) ?? 0;
      let peak = idle;
      const sampler = setInterval(() => {
        void rssBytes(ingressPid).then((b) => {
          if (b && b > peak) peak = b;
        });
      }, 100);
      const t0 = performance.now();
      const outcomes = await withDeadline(
        Promise.all(socks.map((s, i) => s.submit(request(`concurrent ${n} ${i}`)))),
        STEP_DEADLINE_MS,
      ).finally(() => clearInterval(sampler));
      const bad = badOutcomes(outcomes);
      const frames = outcomes.reduce((s, o) => s + o.frames, 0);
      rows.push([
        `${int(n)} concurrent streams`,
        bad === 0
          ? `ok, ${int(frames)} frames, ${((performance.now() - t0) / 1000).toFixed(1)} s`
          : `${bad} streams LOST frames`,
        `RSS ${mib(peak)} (+${mib(peak - base0)}): ${kib((peak - base0) / n)}/stream, idle socket ${kib((idle - base) / n)}`,
      ]);
      if (bad > 0) {
        failed = true;
        break;
      }
      sustained = n;
    } catch (e) {
      rows.push([`${int(n)} concurrent streams`, `FAILED: ${(e as Error).message}`, '']);
      failed = true;
      break;
    } finally {
      for (const s of socks) s.close();
    }
  }
  rows.push(['concurrent streams sustained, no lost frame', int(sustained), `of steps ${steps.join(', ')}`]);
} catch (e) {
  failed = true;
  console.error(e);
} finally {
  await stack.stop();
}

printTable(rows);
process.exit(failed ? 1 : 0);

/** Streams that lost, repeated or garbled anything, or ended in an error. */
function badOutcomes(outcomes: JobOutcome[]): number {
  return outcomes.filter((o) => o.lost > 0 || o.duplicated > 0 || !o.textMatches || o.terminal !== 'done')
    .length;
}

function withDeadline<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`not finished within ${ms / 1000} s`)), ms);
  });
  return Promise.race([p, deadline]).finally(() => clearTimeout(timer));
}

function printTable(table: Array<[string, string, string]>): void {
  const w0 = Math.max(...table.map((r) => r[0].length));
  const w1 = Math.max(...table.map((r) => r[1].length));
  console.log(`\n${'measure'.padEnd(w0)}  ${'value'.padEnd(w1)}  detail`);
  console.log(`${'-'.repeat(w0)}  ${'-'.repeat(w1)}  ${'-'.repeat(40)}`);
  for (const [a, b, c] of table) console.log(`${a.padEnd(w0)}  ${b.padEnd(w1)}  ${c}`);
}
