/**
 * Where a gateway request's time goes, hop by hop: `node bench/gateway/trace.ts [--requests 200]`.
 * `--env K=V` (repeatable) adds environment to every service (e.g. FAREGATE_CONFIG=faregate.config.json).
 * Sends non-streaming requests one at a time through the gateway while Redis MONITOR records every
 * command of this stack (server clock, µs), then lines them up against the client's send and receive
 * times (same host, same clock). Prints one request's timeline and the median gap before each step
 * over all requests of the most common shape. Also times the Postgres budget hold on its own.
 * MONITOR slows Redis down a little: use this for the breakdown, and latency.ts for the figures.
 */
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import pg from 'pg';
import { Pool } from 'undici';
import { median } from '../support/load.ts';
import { parseEnvArgs, startBenchStack } from '../support/stack.ts';

const { values: argv } = parseArgs({
  options: {
    requests: { type: 'string', default: '200' },
    warmup: { type: 'string', default: '500' },
    env: { type: 'string', multiple: true, default: [] },
  },
});
const N = Number(argv.requests);
const WARMUP = Number(argv.warmup);
const PROMPT = 'In one short sentence, what is the largest planet in the solar system?';
/** Epoch ms with µs resolution, comparable with Redis MONITOR's timestamps. */
const nowUs = () => (performance.timeOrigin + performance.now()) * 1000;

interface Ev {
  us: number;
  who: string;
  what: string;
  /** Redis commands this script ran. */
  inner?: number;
}

console.log(`$ node bench/gateway/trace.ts ${process.argv.slice(2).join(' ')}`.trimEnd());
// `--env K=V` (repeatable): extra environment for every service, e.g. the shipped routing file.
const env = parseEnvArgs(argv.env);
const stack = await startBenchStack({ env });
const admin = new Redis(stack.redisUrl);
// `monitor()` opens a connection of its own: both it and the client it came from must be closed, or
// this process never exits.
const monitorBase = new Redis(stack.redisUrl);
const monitor = await monitorBase.monitor();
try {
  const pool = new Pool(stack.url, { connections: 1, keepAliveTimeout: 60_000 });
  const body = JSON.stringify({ model: 'openai/gpt-4o-mini', messages: [{ role: 'user', content: PROMPT }] });
  const headers = { authorization: `Bearer ${stack.apiKey}`, 'content-type': 'application/json' };
  const send = async () => {
    const r = await pool.request({ path: '/v1/chat/completions', method: 'POST', headers, body });
    const text = await r.body.text();
    if (r.statusCode !== 200) throw new Error(`HTTP ${r.statusCode}: ${text.slice(0, 200)}`);
  };
  for (let i = 0; i < WARMUP; i++) await send();

  // Connections are labelled by their client names (the services name theirs).
  const names = new Map<string, string>();
  for (const line of ((await admin.client('LIST')) as string).split('\n')) {
    const addr = /addr=(\S+)/.exec(line)?.[1];
    const name = /name=(\S*)/.exec(line)?.[1];
    if (addr) names.set(addr, name || `unnamed@${addr.split(':')[1]}`);
  }
  const events: Ev[] = [];
  let inScripts = 0;
  monitor.on('monitor', (time: string, args: string[], source: string) => {
    if (!args.some((a) => a.includes(stack.prefix))) return;
    // Commands run inside a script are listed after it with source `lua`: count them, don't list them.
    if (source === 'lua') {
      inScripts++;
      const last = events.at(-1);
      if (last) last.inner = (last.inner ?? 0) + 1;
      return;
    }
    events.push({
      us: Number(time) * 1e6,
      who: names.get(source) ?? source,
      what: describe(args, stack.prefix),
    });
  });

  const windows: Array<{ start: number; end: number }> = [];
  for (let i = 0; i < N; i++) {
    const start = nowUs();
    await send();
    windows.push({ start, end: nowUs() });
  }
  // Let MONITOR's last lines arrive.
  await admin.ping();
  await pool.close();

  const timelines = windows.map((w) => [
    { us: w.start, who: 'client', what: 'send' },
    ...events.filter((e) => e.us >= w.start && e.us <= w.end),
    { us: w.end, who: 'client', what: 'received' },
  ]);
  // Billing and BullMQ's blocking marker reads interleave at random: the shape is the request path.
  const onPath = (e: Ev) => e.who === 'client' || e.who.startsWith('fg-');
  const shapeOf = (t: Ev[]) =>
    t
      .filter(onPath)
      .map((e) => `${e.who} ${e.what}`)
      .join('\n');
  const counts = new Map<string, number>();
  for (const t of timelines) counts.set(shapeOf(t), (counts.get(shapeOf(t)) ?? 0) + 1);
  const [modal, modalCount] = [...counts.entries()].sort((a, b) => b[1] - a[1])[0]!;
  const same = timelines.filter((t) => shapeOf(t) === modal).map((t) => t.filter(onPath));

  const example = timelines.find((t) => shapeOf(t) === modal)!;
  console.log(`\nOne request, every command of the stack (offsets from the client's send, ms):\n`);
  for (const e of example) {
    const inner = e.inner ? ` (runs ${e.inner} commands)` : '';
    console.log(`  +${((e.us - example[0]!.us) / 1000).toFixed(3)}  ${e.who.padEnd(22)} ${e.what}${inner}`);
  }

  console.log(
    `\nRequest path only: median gap before each step, ${modalCount} of ${N} requests with this shape (ms):\n`,
  );
  console.log('| # | gap | at | by | command |');
  console.log('|---:|---:|---:|---|---|');
  const steps = same[0]!.length;
  for (let i = 0; i < steps; i++) {
    const gap = i === 0 ? 0 : median(same.map((t) => (t[i]!.us - t[i - 1]!.us) / 1000));
    const at = median(same.map((t) => (t[i]!.us - t[0]!.us) / 1000));
    const e = same[0]![i]!;
    const inner = e.inner ? ` (runs ${e.inner} commands)` : '';
    console.log(`| ${i} | ${gap.toFixed(3)} | ${at.toFixed(3)} | ${e.who} | ${e.what}${inner} |`);
  }
  // Every command of the stack during the measured requests, by process and shape, per request.
  const byCommand = new Map<string, { calls: number; inner: number }>();
  for (const e of timelines.flat()) {
    if (e.who === 'client') continue;
    const k = `${e.who}  ${e.what}`;
    const c = byCommand.get(k) ?? { calls: 0, inner: 0 };
    c.calls++;
    c.inner += e.inner ?? 0;
    byCommand.set(k, c);
  }
  console.log(
    '\nAll commands during the requests, per request (process, command, calls, commands inside):\n',
  );
  for (const [k, c] of [...byCommand.entries()].sort((a, b) => b[1].calls - a[1].calls).slice(0, 25)) {
    console.log(`  ${(c.calls / N).toFixed(2).padStart(6)}  ${(c.inner / N).toFixed(2).padStart(6)}  ${k}`);
  }
  const perRequest = (events.length + inScripts) / N;
  console.log(
    `\nRedis commands per request (scripts' inner commands included, all processes): ${perRequest.toFixed(1)}`,
  );
  const all = median(timelines.map((t) => (t.at(-1)!.us - t[0]!.us) / 1000));
  console.log(`\nmedian end-to-end with MONITOR on: ${all.toFixed(3)} ms`);

  await timeHold(stack.databaseUrl);
} finally {
  monitor.disconnect();
  monitorBase.disconnect();
  admin.disconnect();
  await stack.stop();
}

/** A command with this stack's prefix and per-request ids blanked out, and long arguments cut. */
function describe(args: string[], prefix: string): string {
  const script = /^eval(sha)?$/i.test(args[0] ?? '');
  return (script ? [args[0]!, ...args.slice(3, 5)] : args.slice(0, 4))
    .map((a) =>
      a
        .replaceAll(prefix, '~')
        .replace(/req_[A-Za-z0-9_-]+/g, '<id>')
        .replace(/\b\d{10,}(-\d+)?\b/g, '<n>')
        .replace(/\{u\d+\}/g, '{u*}')
        .slice(0, 48),
    )
    .join(' ');
}

/**
 * The budget hold (`sy_place_hold`, which the ingress calls once per budget lease) timed
 * alone from a Node client, to split the ingress's first gap into Postgres and the rest.
 */
async function timeHold(databaseUrl: string): Promise<void> {
  const c = new pg.Client({ connectionString: databaseUrl });
  await c.connect();
  try {
    const k = await c.query<{ id: string; account_id: string }>(
      'SELECT id, account_id FROM api_keys LIMIT 1',
    );
    const key = k.rows[0];
    if (!key) return;
    const took: number[] = [];
    for (let i = 0; i < 300; i++) {
      const t = performance.now();
      await c.query('SELECT sy_place_hold($1, $2, $3, $4, $5)', [
        `req_trace_${i}`,
        key.account_id,
        key.id,
        '1',
        new Date(Date.now() + 60_000),
      ]);
      took.push(performance.now() - t);
    }
    await c.query("DELETE FROM holds WHERE request_id LIKE 'req_trace_%'");
    console.log(`sy_place_hold round trip alone (300 calls): median ${median(took).toFixed(3)} ms`);
  } finally {
    await c.end();
  }
}
