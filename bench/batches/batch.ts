/**
 * Batch benchmark (not a test):
 *
 *   node bench/batches/batch.ts [--lines 50000] [--tenants 2] [--in-flight 256] [--tick-ms 100]
 *                               [--interactive-in-flight 16] [--no-probe] [--cpu-prof dir]
 *                               [--node-args '--max-old-space-size=…'] [--worker-concurrency 64]
 *
 * Uploads `--lines` chat requests as JSONL through `POST /v1/files` (split evenly between `--tenants`
 * accounts, each with a batch of its own, created together), runs them with `POST /v1/batches`
 * against the fake provider at 0 ms, and prints: upload time, time from upload to the first line
 * done, lines/s end to end (first upload start to the last batch `completed`) and while running,
 * each tenant's line rate while all batches ran (fairness: the slowest over the fastest), interactive
 * latency (one caller at 1 connection, JSON) idle and while the batches run, and the peak RSS (VmHWM)
 * of every process of the stack.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { Pool } from 'undici';
import { Redis } from 'ioredis';
import { cpuMeter } from '../support/cpu.ts';
import { closedLoop, percentile } from '../support/load.ts';
import { configureFake, startBenchStack } from '../support/stack.ts';

const { values } = parseArgs({
  options: {
    lines: { type: 'string', default: '50000' },
    tenants: { type: 'string', default: '2' },
    'in-flight': { type: 'string', default: '256' },
    'tick-ms': { type: 'string', default: '100' },
    /** BATCH_INTERACTIVE_IN_FLIGHT: lines per batch in flight while interactive work is seen. */
    'interactive-in-flight': { type: 'string', default: '16' },
    probe: { type: 'boolean', default: true },
    /** Write a V8 CPU profile of the ingress (and worker) into this directory. */
    'cpu-prof': { type: 'string' },
    /** Extra node flags for ingress, worker and billing (space-separated), e.g. `--max-old-space-size=96`. */
    'node-args': { type: 'string', default: '' },
    /** WORKER_CONCURRENCY of the worker (its default when absent). */
    'worker-concurrency': { type: 'string' },
  },
  allowNegative: true,
});
const lines = Number(values.lines);
const tenants = Math.max(1, Number(values.tenants));
console.log(
  `$ node bench/batches/batch.ts --lines ${lines} --tenants ${tenants} --in-flight ${values['in-flight']} --tick-ms ${values['tick-ms']} --interactive-in-flight ${values['interactive-in-flight']}${values.probe ? '' : ' --no-probe'}${values['worker-concurrency'] ? ` --worker-concurrency ${values['worker-concurrency']}` : ''}`,
);

const nodeArgs = values['node-args'].split(' ').filter(Boolean);
const prof = values['cpu-prof'] ? ['--cpu-prof', `--cpu-prof-dir=${values['cpu-prof']}`] : [];
const adminToken = `bench-admin-${Math.random().toString(36).slice(2)}-token`;
const stack = await startBenchStack({
  verbose: process.env.BENCH_VERBOSE === '1',
  providers: ['openai'],
  nodeArgs: {
    ingress: [...nodeArgs, ...prof],
    worker: [...nodeArgs, ...prof],
    billing: nodeArgs,
  },
  env: {
    BATCH_MAX_IN_FLIGHT: String(values['in-flight']),
    BATCH_TICK_MS: String(values['tick-ms']),
    BATCH_INTERACTIVE_IN_FLIGHT: String(values['interactive-in-flight']),
    FILE_MAX_LINES: String(Math.max(lines, 50_000)),
    FAREGATE_ADMIN_TOKEN: adminToken,
    ...(values['worker-concurrency'] ? { WORKER_CONCURRENCY: values['worker-concurrency'] } : {}),
  },
});
const rssNow = (pid: number) => {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : Number.NaN;
};
const peakRss = (pid: number) => {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : Number.NaN;
};
const json = { 'content-type': 'application/json' };
const s = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
const ms2 = (n: number) => `${n.toFixed(2)} ms`;

async function admin(path: string, body: unknown): Promise<Record<string, unknown>> {
  const r = await fetch(`${stack.url}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${adminToken}`, ...json },
    body: JSON.stringify(body),
  });
  const out = (await r.json()) as Record<string, unknown>;
  if (!r.ok) throw new Error(`${path}: ${r.status} ${JSON.stringify(out)}`);
  return out;
}

/** A fresh account with ample credit and a key, once billing has applied the credit. */
async function tenantKey(i: number): Promise<string> {
  const acc = await admin('/admin/v1/accounts', { name: `bench-tenant-${i}` });
  await admin('/admin/v1/credits', { account_id: acc.id, amount_usd: '100000' });
  const key = (await admin('/admin/v1/keys', { account_id: acc.id, name: 'bench' })).key as string;
  const deadline = Date.now() + 60_000;
  // The credit is applied by billing: wait until a request is not refused for the balance.
  for (;;) {
    const r = await fetch(`${stack.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, ...json },
      body: JSON.stringify({ model: 'openai/gpt-4o-mini', messages: [{ role: 'user', content: 'credit?' }] }),
    });
    await r.arrayBuffer();
    if (r.ok) return key;
    if (Date.now() > deadline) throw new Error(`tenant ${i}: still refused (${r.status}) after 60 s`);
    await new Promise((res) => setTimeout(res, 200));
  }
}

interface Counts {
  total: number;
  completed: number;
  failed: number;
}
interface Run {
  key: string;
  id: string;
  status: string;
  counts: Counts;
  /** When the bench first saw it `finalizing` (writing its output and error files). */
  finalizingAt?: number;
  doneAt?: number;
}

try {
  await configureFake(stack.fakeUrl, { chunkMs: 0, firstByteMs: 0, tokens: 8 });
  const keys = [stack.apiKey];
  for (let i = 1; i < tenants; i++) keys.push(await tenantKey(i));

  // Interactive latency: one caller at 1 connection (the bootstrap key), JSON.
  const pool = new Pool(stack.url, { connections: 1, keepAliveTimeout: 60_000 });
  const probeBody = JSON.stringify({
    model: 'openai/gpt-4o-mini',
    messages: [{ role: 'user', content: 'an interactive question' }],
  });
  const send = async () => {
    const r = await pool.request({
      path: '/v1/chat/completions',
      method: 'POST',
      headers: { authorization: `Bearer ${stack.apiKey}`, ...json },
      body: probeBody,
    });
    const text = await r.body.text();
    if (r.statusCode !== 200) throw new Error(`probe: HTTP ${r.statusCode} ${text.slice(0, 200)}`);
  };
  const idle = values.probe
    ? await closedLoop({ concurrency: 1, maxRequests: 2_000, maxMs: 8_000, send })
    : undefined;

  const per = Math.floor(lines / tenants);
  // CPU of every process and Redis commands over the batches (the probe's requests included).
  const meter = cpuMeter(stack.services, stack.redisUrl, stack.databaseUrl);
  const redisStats = new Redis(stack.redisUrl);
  const commands = async () =>
    Number(/^total_commands_processed:(\d+)/m.exec(await redisStats.info('stats'))?.[1] ?? Number.NaN);
  const commandStats = async () => {
    const out = new Map<string, number>();
    for (const m of (await redisStats.info('commandstats')).matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm))
      out.set(m[1] ?? '', Number(m[2]));
    return out;
  };
  await meter.mark();
  const commands0 = await commands();
  const stats0 = await commandStats();
  // RSS every second, to see whether a process grows with the batch or levels off.
  const rssTrail: string[] = [];
  const rssTimer = setInterval(() => {
    rssTrail.push(stack.services.map((svc) => rssNow(svc.pid).toFixed(0)).join('/'));
  }, 1000);
  const t0 = performance.now();
  const runs: Run[] = [];
  let tUploaded = t0;
  let tCreated = t0;
  await Promise.all(
    keys.map(async (key, ti) => {
      const n = ti === tenants - 1 ? lines - per * (tenants - 1) : per;
      const text = Array.from({ length: n }, (_, i) =>
        JSON.stringify({
          custom_id: `t${ti}-r${i}`,
          method: 'POST',
          url: '/v1/chat/completions',
          body: {
            model: 'gpt-4o-mini',
            messages: [{ role: 'user', content: `question ${i}` }],
            max_tokens: 16,
          },
        }),
      ).join('\n');
      const form = new FormData();
      form.append('purpose', 'batch');
      form.append('file', new Blob([text]), `bench-${ti}.jsonl`);
      const auth = { authorization: `Bearer ${key}` };
      const up = await fetch(`${stack.url}/v1/files`, { method: 'POST', headers: auth, body: form });
      const file = (await up.json()) as { id: string };
      if (!up.ok) throw new Error(`upload: ${up.status} ${JSON.stringify(file)}`);
      tUploaded = Math.max(tUploaded, performance.now());
      const cr = await fetch(`${stack.url}/v1/batches`, {
        method: 'POST',
        headers: { ...auth, ...json },
        body: JSON.stringify({
          input_file_id: file.id,
          endpoint: '/v1/chat/completions',
          completion_window: '24h',
        }),
      });
      const batch = (await cr.json()) as { id: string };
      tCreated = Math.max(tCreated, performance.now());
      if (!cr.ok) throw new Error(`create: ${cr.status} ${JSON.stringify(batch)}`);
      runs.push({ key, id: batch.id, status: 'validating', counts: { total: n, completed: 0, failed: 0 } });
    }),
  );

  // The probe runs while the batches do; it stops when the first batch ends (all were running).
  let probing = values.probe;
  const busyLat: number[] = [];
  const probeLoop = (async () => {
    while (probing) {
      const t = performance.now();
      await send();
      busyLat.push(performance.now() - t);
    }
  })();

  let firstDone: number | undefined;
  let running: number | undefined;
  let fairness: { at: number; done: number[] } | undefined;
  const ended = (r: Run) => ['completed', 'failed', 'expired', 'cancelled'].includes(r.status);
  while (!runs.every(ended)) {
    // Every 20 ms until the first line is done (that figure is timed by this poll), then 100 ms.
    await new Promise((r) => setTimeout(r, firstDone === undefined ? 20 : 100));
    await Promise.all(
      runs.map(async (run) => {
        if (ended(run)) return;
        const b = (await (
          await fetch(`${stack.url}/v1/batches/${run.id}`, {
            headers: { authorization: `Bearer ${run.key}` },
          })
        ).json()) as { status: string; request_counts: Counts };
        run.status = b.status;
        run.counts = b.request_counts;
        if (run.status === 'finalizing' && run.finalizingAt === undefined)
          run.finalizingAt = performance.now();
        if (ended(run)) {
          run.doneAt = performance.now();
          run.finalizingAt ??= run.doneAt;
        }
      }),
    );
    const now = performance.now();
    if (running === undefined && runs.some((r) => r.status !== 'validating')) running = now;
    if (firstDone === undefined && runs.some((r) => r.counts.completed + r.counts.failed > 0))
      firstDone = now;
    if (!fairness && runs.some(ended)) {
      fairness = { at: now, done: runs.map((r) => r.counts.completed + r.counts.failed) };
      probing = false;
    }
  }
  probing = false;
  await probeLoop;
  await pool.close();
  const tEnd = performance.now();
  clearInterval(rssTimer);
  if (process.env.BENCH_SNAP_AT_END === '1') {
    // With --node-args '--heapsnapshot-signal=SIGUSR2 --diagnostic-dir=…': a heap snapshot of each.
    for (const svc of stack.services) if (svc.name !== 'fake') process.kill(svc.pid, 'SIGUSR2');
    await new Promise((r) => setTimeout(r, 15_000));
  }
  const cpu = await meter.read();
  const commandsUsed = (await commands()) - commands0;
  const stats1 = await commandStats();
  const perCommand = [...stats1]
    .map(([k, v]) => [k, (v - (stats0.get(k) ?? 0)) / lines] as const)
    .filter(([, v]) => v >= 0.5)
    .sort((a, b) => b[1] - a[1]);
  meter.close();
  redisStats.disconnect();

  for (const r of runs) console.log(`batch ${r.id}: ${r.status}, counts ${JSON.stringify(r.counts)}`);
  console.log(`upload ${s(tUploaded - t0)} (all ${tenants} file(s))`);
  console.log(`upload done → first line done: ${s((firstDone ?? tEnd) - tUploaded)}`);
  console.log(`upload done → every batch created (POST /v1/batches answered): ${s(tCreated - tUploaded)}`);
  console.log(`validation (upload done → in_progress seen): ${s((running ?? tEnd) - tUploaded)}`);
  console.log(
    `finalizing (output and error files; finalizing seen → completed, 100 ms polls): ${runs.map((r) => s((r.doneAt ?? tEnd) - (r.finalizingAt ?? tEnd))).join(' / ')}`,
  );
  console.log(
    `lines/s end to end (upload start → all completed): ${(lines / ((tEnd - t0) / 1000)).toFixed(0)}`,
  );
  console.log(
    `lines/s running (in_progress → all completed): ${(lines / ((tEnd - (running ?? t0)) / 1000)).toFixed(0)}`,
  );
  if (fairness && runs.length > 1) {
    const span = (fairness.at - (running ?? t0)) / 1000;
    const rates = fairness.done.map((d) => d / span);
    console.log(
      `tenants' line rates while all ran: ${rates.map((r) => r.toFixed(0)).join(' / ')} lines/s; slowest / fastest ${(Math.min(...rates) / Math.max(...rates)).toFixed(2)} (target ≥ 0.80)`,
    );
  }
  if (idle && busyLat.length) {
    const busy = Float64Array.from(busyLat).sort();
    const [ip50, ip99, bp50, bp99] = [
      percentile(idle.latenciesMs, 50),
      percentile(idle.latenciesMs, 99),
      percentile(busy, 50),
      percentile(busy, 99),
    ];
    console.log(
      `interactive (1 connection): idle p50 ${ms2(ip50)} p99 ${ms2(ip99)} (n=${idle.latenciesMs.length}); during the batches p50 ${ms2(bp50)} p99 ${ms2(bp99)} (n=${busy.length}): ${((bp50 / ip50 - 1) * 100).toFixed(0)} % / ${((bp99 / ip99 - 1) * 100).toFixed(0)} % (target ≤ +10 %)`,
    );
  }
  console.log(
    `CPU per line (ms, probe included): ${Object.entries(cpu)
      .filter(([k]) => k !== 'bench-client')
      .map(([k, v]) => `${k} ${(v / lines).toFixed(3)}`)
      .join(', ')}; Redis commands per line ${(commandsUsed / lines).toFixed(1)}`,
  );
  console.log(
    `Redis commands per line by command: ${perCommand.map(([k, v]) => `${k} ${v.toFixed(1)}`).join(', ')}`,
  );
  console.log(
    `RSS (MB, ${stack.services.map((svc) => svc.name).join('/')}) each second: ${rssTrail.join(' ')}`,
  );
  for (const svc of stack.services) console.log(`peak RSS ${svc.name}: ${peakRss(svc.pid).toFixed(0)} MB`);
} finally {
  await stack.stop();
}
