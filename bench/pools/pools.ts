/**
 * Worker-pool benchmark (not a test): `node bench/pools/pools.ts [--rpm 600] [--window-ms 60000]
 * [--windows 2] [--workers 4] [--fallback-requests 200] [--lease-ms 250]`.
 * 3. A 429 storm: how many upstream calls each 429 a caller sees costs, and how long the caller waits.
 *
 * 1. Rate limit: an RPM limit L shared by `--workers` processes of one pool, offered far more load
 *    than L for `--windows` windows. The fake provider enforces the same L (so any excess would show
 *    as upstream 429s). Prints the achieved rate as a fraction of L (target ≥ 0.95), the most calls
 *    the provider saw in any sliding window (must be ≤ L), and the upstream 429 count (target 0).
 * 2. Fallback: latency of requests whose first provider answers 503 (one attempt, then the next
 *    candidate) vs requests served by that next provider directly. Prints the added time.
 */
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Agent, request } from 'undici';
import { closedLoop, percentile } from '../support/load.ts';
import { startBenchStack } from '../support/stack.ts';

const { values } = parseArgs({
  options: {
    rpm: { type: 'string', default: '600' },
    'window-ms': { type: 'string', default: '60000' },
    windows: { type: 'string', default: '2' },
    workers: { type: 'string', default: '4' },
    'fallback-requests': { type: 'string', default: '200' },
    /** RATE_LEASE_MS of the workers (unset: the default, 250; 0: a round trip per request). */
    'lease-ms': { type: 'string' },
  },
});
const L = Number(values.rpm);
const windowMs = Number(values['window-ms']);
const windows = Number(values.windows);
const workers = Number(values.workers);
const fallbackRequests = Number(values['fallback-requests']);
console.log(
  `$ node bench/pools/pools.ts --rpm ${L} --window-ms ${windowMs} --windows ${windows} --workers ${workers}`,
);

const config = join(tmpdir(), `fg-bench-pools-${process.pid}.json`);
writeFileSync(
  config,
  JSON.stringify({ fallbacks: { 'openai/gpt-4o-mini': ['anthropic/claude-haiku-4-5'] } }),
);
const stack = await startBenchStack({
  providers: ['openai', 'anthropic'],
  workers,
  env: {
    FAREGATE_CONFIG: config,
    RATE_WINDOW_MS: String(windowMs),
    WORKER_RPM: String(L),
    WORKER_ATTEMPTS: '1',
    WORKER_CONCURRENCY: '256',
    ...(values['lease-ms'] === undefined ? {} : { RATE_LEASE_MS: values['lease-ms'] }),
  },
});
const agent = new Agent({ connections: 512, keepAliveTimeout: 30_000 });
const control = (path: string, method: string, body?: unknown) =>
  request(`${stack.fakeUrl}/_control/${path}`, {
    method: method as 'GET',
    dispatcher: agent,
    headers: { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  }).then((r) => r.body.json());
const chat = async (model: string) => {
  const r = await request(`${stack.url}/v1/chat/completions`, {
    method: 'POST',
    dispatcher: agent,
    headers: { authorization: `Bearer ${stack.apiKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }], max_tokens: 16 }),
  });
  const text = await r.body.text();
  if (r.statusCode !== 200) throw new Error(`${r.statusCode} ${text.slice(0, 200)}`);
};

try {
  // ── 1. achieved rate under a shared RPM limit ────────────────────────────────────────────────
  // The provider's own limit equals ours, per minute; with other windows it is scaled to match.
  await control('config', 'POST', { provider: 'openai', rpm: Math.round((L * 60_000) / windowMs) });
  await control('calls', 'DELETE');
  const runMs = windows * windowMs;
  const load = await closedLoop({
    concurrency: Math.min(200, L),
    maxRequests: Number.MAX_SAFE_INTEGER,
    maxMs: runMs,
    send: () => chat('openai/gpt-4o-mini'),
  });
  const calls = (await control('calls', 'GET')) as Array<{
    provider: string;
    model: string | null;
    status: number;
    at: number;
  }>;
  const chatCalls = calls.filter((c) => c.provider === 'openai' && c.model !== null);
  const times = chatCalls.map((c) => c.at).sort((a, b) => a - b);
  const upstream429 = chatCalls.filter((c) => c.status === 429).length;
  let maxWindow = 0;
  for (let i = 0, j = 0; i < times.length; i++) {
    while (times[j]! < times[i]! - windowMs + 1) j++;
    maxWindow = Math.max(maxWindow, i - j + 1);
  }
  // Achieved rate over whole windows from the first call (the last partial window is not counted).
  const t0 = times[0] ?? 0;
  const full = times.filter((t) => t < t0 + windows * windowMs).length;
  const achieved = full / windows;
  console.log('\n## Shared rate limit\n');
  console.log(
    `| limit L (per ${windowMs / 1000} s) | processes | achieved per window | achieved / L | max in any window | upstream 429s | client errors |`,
  );
  console.log('|---|---|---|---|---|---|---|');
  console.log(
    `| ${L} | ${workers} | ${achieved.toFixed(1)} | ${(achieved / L).toFixed(3)} | ${maxWindow} | ${upstream429} | ${load.errors} |`,
  );
  if (maxWindow > L) console.log(`!! the provider saw ${maxWindow} > ${L} calls in one window`);

  // ── 2. time a fallback adds ──────────────────────────────────────────────────────────────────
  await control('config', 'POST', { provider: 'openai', rpm: 0 });
  const direct = await closedLoop({
    concurrency: 1,
    maxRequests: fallbackRequests,
    maxMs: 60_000,
    send: () => chat('anthropic/claude-haiku-4-5'),
  });
  await control('faults', 'POST', {
    provider: 'openai',
    faults: Array.from({ length: fallbackRequests }, () => ({ fault: '503' })),
  });
  const viaFallback = await closedLoop({
    concurrency: 1,
    maxRequests: fallbackRequests,
    maxMs: 60_000,
    send: () => chat('openai/gpt-4o-mini'),
  });
  const p = (r: typeof direct, q: number) => percentile(r.latenciesMs, q);
  console.log('\n## Fallback (first provider answers 503, one attempt, then the next candidate)\n');
  console.log('| path | p50 ms | p99 ms | errors |');
  console.log('|---|---|---|---|');
  console.log(
    `| anthropic directly | ${p(direct, 50).toFixed(2)} | ${p(direct, 99).toFixed(2)} | ${direct.errors} |`,
  );
  console.log(
    `| openai 503 → anthropic | ${p(viaFallback, 50).toFixed(2)} | ${p(viaFallback, 99).toFixed(2)} | ${viaFallback.errors} |`,
  );
  console.log(
    `| added by the fallback | ${(p(viaFallback, 50) - p(direct, 50)).toFixed(2)} | ${(p(viaFallback, 99) - p(direct, 99)).toFixed(2)} | |`,
  );

  // ── 3. a 429 storm: what each 429 a caller sees costs ────────────────────────────────────────
  // Every call to anthropic answers 429 with a 300 ms retry-after; anthropic/claude-haiku-4-5 has no
  // fallback here, so each caller (HTTP, default patience) ends with the 429.
  const stormRequests = 20;
  await control('faults', 'DELETE');
  await control('calls', 'DELETE');
  await control('faults', 'POST', {
    provider: 'anthropic',
    faults: Array.from({ length: stormRequests * 5 }, () => ({ fault: '429', retryAfterMs: 300 })),
  });
  const stormMs: number[] = [];
  const statuses = new Map<number, number>();
  for (let i = 0; i < stormRequests; i++) {
    const t = performance.now();
    const r = await request(`${stack.url}/v1/chat/completions`, {
      method: 'POST',
      dispatcher: agent,
      headers: { authorization: `Bearer ${stack.apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        model: 'anthropic/claude-haiku-4-5',
        messages: [{ role: 'user', content: `storm ${i}` }],
        max_tokens: 16,
      }),
    });
    await r.body.text();
    stormMs.push(performance.now() - t);
    statuses.set(r.statusCode, (statuses.get(r.statusCode) ?? 0) + 1);
  }
  await control('faults', 'DELETE');
  const stormCalls = (
    (await control('calls', 'GET')) as Array<{ provider: string; model: string | null }>
  ).filter((c) => c.provider === 'anthropic' && c.model !== null).length;
  const seen429 = statuses.get(429) ?? 0;
  console.log('\n## A 429 storm (every call answers 429, retry-after 300 ms; no fallback)\n');
  console.log(
    '| requests | caller-visible 429s | upstream calls | upstream calls per caller-visible 429 | time to the 429, p50 / max ms |',
  );
  console.log('|---|---|---|---|---|');
  console.log(
    `| ${stormRequests} | ${seen429} | ${stormCalls} | ${seen429 ? (stormCalls / seen429).toFixed(2) : '–'} | ${percentile(Float64Array.from(stormMs).sort(), 50).toFixed(0)} / ${Math.max(...stormMs).toFixed(0)} |`,
  );
  if (seen429 !== stormRequests) console.log(`!! statuses: ${JSON.stringify([...statuses])}`);
} finally {
  await agent.close();
  await stack.stop();
}
