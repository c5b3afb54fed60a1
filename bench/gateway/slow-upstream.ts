/**
 * Long upstream calls benchmark (not a test):
 *
 *   node bench/gateway/slow-upstream.ts [--upstream-ms 1000] [--connections 256] [--seconds 15]
 *                                       [--env K=V ...]
 *
 * A real provider takes 1 to 30 s per call, not the 0 ms the other benches use. This one has the fake
 * answer after `--upstream-ms`, drives `--connections` callers in a closed loop (JSON chat) through
 * one worker process, and prints requests/s against the most the upstream allows at that
 * concurrency (connections × 1000 / upstream-ms), the added latency p50/p99 over the upstream's own
 * time, and the errors: what a worker process's WORKER_CONCURRENCY (`--env WORKER_CONCURRENCY=64`
 * to compare) does to callers whose calls are long.
 */
import { parseArgs } from 'node:util';
import { Pool } from 'undici';
import { closedLoop, percentile } from '../support/load.ts';
import { configureFake, parseEnvArgs, startBenchStack } from '../support/stack.ts';

const { values } = parseArgs({
  options: {
    'upstream-ms': { type: 'string', default: '1000' },
    connections: { type: 'string', default: '256' },
    seconds: { type: 'string', default: '15' },
    env: { type: 'string', multiple: true, default: [] },
  },
});
const upstreamMs = Number(values['upstream-ms']);
const connections = Number(values.connections);
const seconds = Number(values.seconds);
const env = parseEnvArgs(values.env);
console.log(`$ node bench/gateway/slow-upstream.ts ${process.argv.slice(2).join(' ')}`.trimEnd());

const stack = await startBenchStack({ providers: ['openai'], env });
let failed = false;
try {
  await configureFake(stack.fakeUrl, { firstByteMs: upstreamMs });
  const body = JSON.stringify({
    model: 'openai/gpt-4o-mini',
    messages: [{ role: 'user', content: 'What is the largest planet?' }],
  });
  const headers = { authorization: `Bearer ${stack.apiKey}`, 'content-type': 'application/json' };
  const pool = new Pool(stack.url, { connections, pipelining: 1, keepAliveTimeout: 60_000 });
  const r = await closedLoop({
    concurrency: connections,
    maxRequests: Number.MAX_SAFE_INTEGER,
    maxMs: seconds * 1000,
    send: async () => {
      const res = await pool.request({ path: '/v1/chat/completions', method: 'POST', headers, body });
      const text = await res.body.text();
      if (res.statusCode !== 200) throw new Error(`${res.statusCode} ${text.slice(0, 200)}`);
    },
  });
  await pool.close();
  const ceiling = (connections * 1000) / upstreamMs;
  const added = (p: number) => (percentile(r.latenciesMs, p) - upstreamMs).toFixed(0);
  console.log(
    `upstream ${upstreamMs} ms, ${connections} connections, WORKER_CONCURRENCY ${env.WORKER_CONCURRENCY ?? 'default'}: ` +
      `${r.rps.toFixed(1)} req/s of ${ceiling.toFixed(1)} possible (${((100 * r.rps) / ceiling).toFixed(0)} %), ` +
      `added p50 +${added(50)} ms, p99 +${added(99)} ms, errors ${r.errors}${r.firstError ? ` (${r.firstError})` : ''}`,
  );
} catch (e) {
  failed = true;
  console.error(e);
} finally {
  await stack.stop();
}
process.exit(failed ? 1 : 0);
