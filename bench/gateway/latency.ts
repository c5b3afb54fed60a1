/**
 * Gateway latency: the same small non-streaming chat request sent straight to the fake provider and
 * through the whole gateway (ingress → queue → worker → fake → worker → ingress), at 1 connection
 * and at 64, with the fake answering at 0 ms. The difference is what the gateway adds.
 *
 *   node bench/gateway/latency.ts [--requests 3000] [--seconds 10] [--workers 1] [--runs 3]
 *                                 [--concurrency 1,64] [--warmup 1000] [--cpu-prof DIR]
 *                                 [--no-billing] [--env KEY=VALUE]…
 */
import { cpus, loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { Pool } from 'undici';
import { cpuMeter } from '../support/cpu.ts';
import { closedLoop, type LoadResult } from '../support/load.ts';
import { type BenchStackOptions, parseEnvArgs, startBenchStack } from '../support/stack.ts';
import { type PhaseResult, printPhase, printSummary } from './report.ts';

const HELP = `usage: node bench/gateway/latency.ts [options]
  --requests N     requests per measurement at 1 connection (default 3000; capped at 60 s)
  --seconds S      duration of each measurement above 1 connection (default 10)
  --workers N      worker processes in the openai pool (default 1)
  --runs N         repetitions; figures are medians across runs (default 3)
  --concurrency L  comma-separated connection counts (default 1,64)
  --warmup N       warm-up requests before each measurement (default 1000; capped at 5 s)
  --cpu-prof DIR   write V8 CPU profiles of the ingress and workers into DIR (on exit)
  --no-billing     do not run billing (to see what it costs the request path)
  --env K=V        extra environment for every service (repeatable), e.g. --env WORKER_CONCURRENCY=1`;

const { values: argv } = parseArgs({
  options: {
    requests: { type: 'string', default: '3000' },
    seconds: { type: 'string', default: '10' },
    workers: { type: 'string', default: '1' },
    runs: { type: 'string', default: '3' },
    concurrency: { type: 'string', default: '1,64' },
    warmup: { type: 'string', default: '1000' },
    'cpu-prof': { type: 'string' },
    billing: { type: 'boolean', default: true },
    env: { type: 'string', multiple: true, default: [] },
    help: { type: 'boolean', default: false },
  },
  allowNegative: true,
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
const requests = positive('requests', argv.requests);
const seconds = positive('seconds', argv.seconds);
const workers = positive('workers', argv.workers);
const runs = positive('runs', argv.runs);
const warmup = positive('warmup', argv.warmup);
const levels = argv.concurrency.split(',').map((c) => positive('concurrency', c.trim()));

const MAX_SINGLE_MS = 60_000;
const MAX_WARMUP_MS = 5_000;
const PROMPT = 'In one short sentence, what is the largest planet in the solar system?';

let env: Record<string, string>;
try {
  env = parseEnvArgs(argv.env);
} catch (e) {
  console.error(`${(e as Error).message}\n${HELP}`);
  process.exit(2);
}
const opts: BenchStackOptions = { workers, billing: argv.billing, env };
if (argv['cpu-prof']) {
  const prof = ['--cpu-prof', `--cpu-prof-dir=${argv['cpu-prof']}`];
  opts.nodeArgs = { ingress: prof, worker: prof };
}

console.log(`$ node bench/gateway/latency.ts ${process.argv.slice(2).join(' ')}`.trimEnd());
console.log(
  `node ${process.version}, ${cpus().length} cores (${cpus()[0]?.model.trim()}), load average ${fmtLoad()}`,
);

const stack = await startBenchStack(opts);
const meter = cpuMeter(stack.services, stack.redisUrl, stack.databaseUrl);
let failed = false;
try {
  const targets = {
    direct: {
      origin: stack.fakeUrl,
      path: '/openai/v1/chat/completions',
      auth: 'Bearer fake-key',
      model: 'gpt-4o-mini',
    },
    gateway: {
      origin: stack.url,
      path: '/v1/chat/completions',
      auth: `Bearer ${stack.apiKey}`,
      model: 'openai/gpt-4o-mini',
    },
  } as const;
  type Target = keyof typeof targets;

  const measure = async (
    target: Target,
    concurrency: number,
  ): Promise<{ r: LoadResult; cpu: Record<string, number> }> => {
    const t = targets[target];
    const body = JSON.stringify({ model: t.model, messages: [{ role: 'user', content: PROMPT }] });
    const headers = { authorization: t.auth, 'content-type': 'application/json' };
    // One keep-alive connection per in-flight request, as a pooled HTTP client would hold.
    const pool = new Pool(t.origin, { connections: concurrency, pipelining: 1, keepAliveTimeout: 60_000 });
    const send = async () => {
      const res = await pool.request({ path: t.path, method: 'POST', headers, body });
      const text = await res.body.text();
      if (res.statusCode !== 200 || !text.includes('"chat.completion"')) {
        throw new Error(`${target}: HTTP ${res.statusCode} ${text.slice(0, 200)}`);
      }
    };
    try {
      const warm = await closedLoop({ concurrency, maxRequests: warmup, maxMs: MAX_WARMUP_MS, send });
      if (warm.errors > 0) throw new Error(`warm-up failed: ${warm.firstError}`);
      await meter.mark();
      const r = await closedLoop({
        concurrency,
        send,
        ...(concurrency === 1
          ? { maxRequests: requests, maxMs: MAX_SINGLE_MS }
          : { maxRequests: Number.POSITIVE_INFINITY, maxMs: seconds * 1000 }),
      });
      const cpu = await meter.read();
      if (r.errors > 0) throw new Error(`${r.errors} failed requests, first: ${r.firstError}`);
      return { r, cpu };
    } finally {
      await pool.close();
    }
  };

  const results: PhaseResult[] = [];
  for (let run = 1; run <= runs; run++) {
    for (const concurrency of levels) {
      for (const target of ['direct', 'gateway'] as const) {
        const { r, cpu } = await measure(target, concurrency);
        const phase: PhaseResult = { run, concurrency, target, result: r, cpu };
        results.push(phase);
        printPhase(phase);
      }
    }
  }
  printSummary(results, { runs, levels, workers, load: fmtLoad() });
} catch (e) {
  failed = true;
  console.error(`benchmark failed: ${(e as Error).message}`);
} finally {
  meter.close();
  await stack.stop();
}
process.exit(failed ? 1 : 0);

function fmtLoad(): string {
  return loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');
}
