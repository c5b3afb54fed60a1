/**
 * Capacity model (not a test): what one request, one streamed token and one batch line cost Redis
 * (commands, bytes in and out, Redis CPU) and each process (CPU ms), measured on a Redis of the
 * bench's own, and what that means for shards and processes at 10k and 100k requests/s.
 *
 *   REDIS_URL=redis://127.0.0.1:6391 node bench/capacity/capacity.ts [--requests 2000] [--lines 2000]
 *
 * Use a Redis nothing else uses: its statistics are reset (CONFIG RESETSTAT) before every phase, and
 * everything it counts is charged to the phase. The idle gateway's own background commands (pool
 * heartbeats, billing's reads, the batch driver's look) are measured first and taken off each phase.
 */
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { Pool } from 'undici';
import { cpuMeter } from '../support/cpu.ts';
import { closedLoop } from '../support/load.ts';
import { configureFake, startBenchStack } from '../support/stack.ts';

const { values } = parseArgs({
  options: {
    requests: { type: 'string', default: '2000' },
    lines: { type: 'string', default: '2000' },
    concurrency: { type: 'string', default: '16' },
  },
});
const requests = Number(values.requests);
const lines = Number(values.lines);
const concurrency = Number(values.concurrency);
console.log(
  `$ node bench/capacity/capacity.ts --requests ${requests} --lines ${lines} --concurrency ${concurrency}`,
);

interface RedisStats {
  calls: number;
  inBytes: number;
  outBytes: number;
  cpuMs: number;
  byCommand: Map<string, number>;
}

async function redisStats(r: Redis): Promise<RedisStats> {
  const [cmd, stats, cpu] = await Promise.all([r.info('commandstats'), r.info('stats'), r.info('cpu')]);
  const byCommand = new Map<string, number>();
  let calls = 0;
  for (const m of cmd.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) {
    const name = m[1] ?? '';
    // INFO / CONFIG are this bench's own.
    if (name === 'info' || name.startsWith('config')) continue;
    byCommand.set(name, Number(m[2]));
    calls += Number(m[2]);
  }
  const num = (s: string, k: string) => Number(new RegExp(`^${k}:([\\d.]+)`, 'm').exec(s)?.[1] ?? 0);
  return {
    calls,
    inBytes: num(stats, 'total_net_input_bytes'),
    outBytes: num(stats, 'total_net_output_bytes'),
    cpuMs: (num(cpu, 'used_cpu_user') + num(cpu, 'used_cpu_sys')) * 1000,
    byCommand,
  };
}

const stack = await startBenchStack({
  providers: ['openai'],
  env: { FILE_MAX_LINES: String(Math.max(lines, 50_000)), BATCH_MAX_IN_FLIGHT: '256' },
});
const redis = new Redis(stack.redisUrl);
const meter = cpuMeter(stack.services, stack.redisUrl, stack.databaseUrl);
const auth = { authorization: `Bearer ${stack.apiKey}` };
const json = { ...auth, 'content-type': 'application/json' };

interface Phase {
  name: string;
  units: number;
  ms: number;
  redis: RedisStats;
  cpu: Record<string, number>;
}

async function phase(name: string, units: number, run: () => Promise<void>): Promise<Phase> {
  await redis.config('RESETSTAT');
  const cpu0 = await redisStats(redis);
  await meter.mark();
  const t0 = performance.now();
  await run();
  const ms = performance.now() - t0;
  const cpu = await meter.read();
  const after = await redisStats(redis);
  // CPU is not reset by RESETSTAT: take the difference.
  return { name, units, ms, redis: { ...after, cpuMs: after.cpuMs - cpu0.cpuMs }, cpu };
}

const pool = new Pool(stack.url, { connections: concurrency, keepAliveTimeout: 60_000 });
const chat = (stream: boolean) => async () => {
  const res = await pool.request({
    path: '/v1/chat/completions',
    method: 'POST',
    headers: json,
    body: JSON.stringify({
      model: 'openai/gpt-4o-mini',
      stream,
      messages: [{ role: 'user', content: 'How many Redis commands is this?' }],
    }),
  });
  const text = await res.body.text();
  if (res.statusCode !== 200) throw new Error(`HTTP ${res.statusCode} ${text.slice(0, 200)}`);
};
const load = async (n: number, stream: boolean) => {
  const r = await closedLoop({ concurrency, maxRequests: n, maxMs: 120_000, send: chat(stream) });
  if (r.errors) throw new Error(`${r.errors} failed: ${r.firstError}`);
};

async function runBatch(n: number): Promise<void> {
  const text = Array.from({ length: n }, (_, i) =>
    JSON.stringify({
      custom_id: `r${i}`,
      method: 'POST',
      url: '/v1/chat/completions',
      body: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: `question ${i}` }] },
    }),
  ).join('\n');
  const form = new FormData();
  form.append('purpose', 'batch');
  form.append('file', new Blob([text]), 'capacity.jsonl');
  const up = await fetch(`${stack.url}/v1/files`, { method: 'POST', headers: auth, body: form });
  const file = (await up.json()) as { id: string };
  if (!up.ok) throw new Error(`upload: ${up.status} ${JSON.stringify(file)}`);
  const cr = await fetch(`${stack.url}/v1/batches`, {
    method: 'POST',
    headers: json,
    body: JSON.stringify({
      input_file_id: file.id,
      endpoint: '/v1/chat/completions',
      completion_window: '24h',
    }),
  });
  const batch = (await cr.json()) as { id: string };
  if (!cr.ok) throw new Error(`batch: ${cr.status} ${JSON.stringify(batch)}`);
  const deadline = Date.now() + 600_000;
  for (;;) {
    const b = (await (await fetch(`${stack.url}/v1/batches/${batch.id}`, { headers: auth })).json()) as {
      status: string;
    };
    if (b.status === 'completed') return;
    if (['failed', 'expired', 'cancelled'].includes(b.status)) throw new Error(`batch ${b.status}`);
    if (Date.now() > deadline) throw new Error('batch did not complete in 10 minutes');
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Per-unit figures of a phase, minus what the idle gateway does over the same time. */
function perUnit(p: Phase, idle: Phase) {
  const rate = (v: number) => (v / idle.ms) * p.ms;
  const calls = (p.redis.calls - rate(idle.redis.calls)) / p.units;
  const inB = (p.redis.inBytes - rate(idle.redis.inBytes)) / p.units;
  const outB = (p.redis.outBytes - rate(idle.redis.outBytes)) / p.units;
  const redisUs = ((p.redis.cpuMs - rate(idle.redis.cpuMs)) * 1000) / p.units;
  const proc: Record<string, number> = {};
  for (const [k, v] of Object.entries(p.cpu)) {
    if (k === 'bench-client' || k === 'redis') continue;
    const name = k.replace(/#\d+$/, '');
    proc[name] = (proc[name] ?? 0) + (v - rate(idle.cpu[k] ?? 0)) / p.units;
  }
  const top = [...p.redis.byCommand.entries()]
    .map(([c, n]) => [c, (n - rate(idle.redis.byCommand.get(c) ?? 0)) / p.units] as const)
    .filter(([, n]) => n >= 0.05)
    .sort((a, b) => b[1] - a[1])
    .slice(0, 10);
  return { calls, inB, outB, redisUs, proc, top };
}

const fmt = (n: number, d = 1) =>
  n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });

try {
  await configureFake(stack.fakeUrl, { chunkMs: 0, firstByteMs: 0, tokens: 12 });
  await load(300, false); // warm
  const idle = await phase('idle', 1, () => new Promise((r) => setTimeout(r, 5_000)));
  const jsonReq = await phase('request (JSON)', requests, () => load(requests, false));
  // Tokens paced as a provider sends them (a chunk every 5 ms), so frames are not all coalesced.
  const streamed = Math.max(50, Math.round(requests / 4));
  await configureFake(stack.fakeUrl, { chunkMs: 5, firstByteMs: 0, tokens: 12 });
  const sse = await phase('request (SSE, 12 tokens)', streamed, () => load(streamed, true));
  await configureFake(stack.fakeUrl, { chunkMs: 5, firstByteMs: 0, tokens: 212 });
  const sseLong = await phase('request (SSE, 212 tokens)', streamed, () => load(streamed, true));
  await configureFake(stack.fakeUrl, { chunkMs: 0, firstByteMs: 0, tokens: 12 });
  const batch = await phase('batch line', lines, () => runBatch(lines));

  const j = perUnit(jsonReq, idle);
  const s = perUnit(sse, idle);
  const sl = perUnit(sseLong, idle);
  const b = perUnit(batch, idle);
  const token = {
    calls: (sl.calls - s.calls) / 200,
    inB: (sl.inB - s.inB) / 200,
    outB: (sl.outB - s.outB) / 200,
    redisUs: (sl.redisUs - s.redisUs) / 200,
  };

  console.log(`\nidle gateway: ${fmt((idle.redis.calls / idle.ms) * 1000)} Redis commands/s\n`);
  console.log(
    '| per | Redis commands | bytes to Redis | bytes from Redis | Redis CPU (µs) | ingress CPU (ms) | worker CPU (ms) | billing CPU (ms) | Postgres CPU (ms) |',
  );
  console.log('|---|---:|---:|---:|---:|---:|---:|---:|---:|');
  const row = (name: string, u: ReturnType<typeof perUnit>) =>
    console.log(
      `| ${name} | ${fmt(u.calls)} | ${fmt(u.inB, 0)} | ${fmt(u.outB, 0)} | ${fmt(u.redisUs)} | ${fmt(u.proc.ingress ?? 0, 3)} | ${fmt(u.proc['worker:openai'] ?? 0, 3)} | ${fmt(u.proc.billing ?? 0, 3)} | ${fmt(u.proc.postgres ?? 0, 3)} |`,
    );
  row('request, JSON', j);
  row('request, SSE (12 tokens, a chunk every 5 ms)', s);
  console.log(
    `| streamed token (SSE, 212 vs 12 tokens, a chunk every 5 ms) | ${fmt(token.calls, 2)} | ${fmt(token.inB, 0)} | ${fmt(token.outB, 0)} | ${fmt(token.redisUs, 2)} | | | | |`,
  );
  row('batch line (JSON, 12 tokens)', b);
  console.log(
    '\nmost frequent commands per JSON request:',
    j.top.map(([c, n]) => `${c} ${fmt(n)}`).join(', '),
  );
  console.log('most frequent commands per batch line:', b.top.map(([c, n]) => `${c} ${fmt(n)}`).join(', '));

  // One Redis shard is one core: plan it at 70 % of that.
  const perShard = (0.7 * 1e6) / j.redisUs;
  const cores = (ms: number, rps: number) => (ms * rps) / 1000 / 0.7;
  console.log(`\nper-shard ceiling (JSON requests, one Redis core at 70 %): ${fmt(perShard, 0)} requests/s`);
  for (const rps of [10_000, 100_000]) {
    console.log(
      `${fmt(rps, 0)} requests/s: ${Math.ceil(rps / perShard)} Redis shard(s) (masters), ` +
        `${Math.ceil(cores(j.proc.ingress ?? 0, rps))} ingress core(s), ` +
        `${Math.ceil(cores(j.proc['worker:openai'] ?? 0, rps))} worker core(s), ` +
        `${Math.ceil(cores(j.proc.billing ?? 0, rps))} billing core(s), ` +
        `${Math.ceil(cores(j.proc.postgres ?? 0, rps))} Postgres core(s)`,
    );
  }
} finally {
  await pool.close();
  redis.disconnect();
  meter.close();
  await stack.stop();
}
