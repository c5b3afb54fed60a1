/**
 * Batch benchmark (not a test): `node bench/batches/batch.ts [--lines 50000] [--in-flight 256]
 * [--tick-ms 100]`. Uploads a JSONL file of `--lines` chat requests through `POST /v1/files`, runs it
 * with `POST /v1/batches` against the fake provider at 0 ms, and prints: upload time, time from upload
 * to the first line done, lines/s end to end (upload start to `completed`) and while running, and the
 * peak RSS (VmHWM) of every process of the stack.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { configureFake, startBenchStack } from '../support/stack.ts';

const { values } = parseArgs({
  options: {
    lines: { type: 'string', default: '50000' },
    'in-flight': { type: 'string', default: '256' },
    'tick-ms': { type: 'string', default: '100' },
  },
});
const lines = Number(values.lines);
console.log(
  `$ node bench/batches/batch.ts --lines ${lines} --in-flight ${values['in-flight']} --tick-ms ${values['tick-ms']}`,
);

const stack = await startBenchStack({
  verbose: process.env.BENCH_VERBOSE === '1',
  providers: ['openai'],
  env: {
    BATCH_MAX_IN_FLIGHT: String(values['in-flight']),
    BATCH_TICK_MS: String(values['tick-ms']),
    FILE_MAX_LINES: String(Math.max(lines, 50_000)),
  },
});
const peakRss = (pid: number) => {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : Number.NaN;
};
try {
  await configureFake(stack.fakeUrl, { chunkMs: 0, firstByteMs: 0, tokens: 8 });
  const auth = { authorization: `Bearer ${stack.apiKey}` };
  const text = Array.from({ length: lines }, (_, i) =>
    JSON.stringify({
      custom_id: `r${i}`,
      method: 'POST',
      url: '/v1/chat/completions',
      body: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: `question ${i}` }], max_tokens: 16 },
    }),
  ).join('\n');
  const t0 = performance.now();
  const form = new FormData();
  form.append('purpose', 'batch');
  form.append('file', new Blob([text]), 'bench.jsonl');
  const up = await fetch(`${stack.url}/v1/files`, { method: 'POST', headers: auth, body: form });
  const file = (await up.json()) as { id: string };
  if (!up.ok) throw new Error(`upload: ${up.status} ${JSON.stringify(file)}`);
  const tUploaded = performance.now();
  const cr = await fetch(`${stack.url}/v1/batches`, {
    method: 'POST',
    headers: { ...auth, 'content-type': 'application/json' },
    body: JSON.stringify({
      input_file_id: file.id,
      endpoint: '/v1/chat/completions',
      completion_window: '24h',
    }),
  });
  const batch = (await cr.json()) as { id: string };
  if (!cr.ok) throw new Error(`create: ${cr.status} ${JSON.stringify(batch)}`);
  let firstDone: number | undefined;
  let running: number | undefined;
  let status = '';
  let counts = { total: 0, completed: 0, failed: 0 };
  while (!['completed', 'failed', 'expired', 'cancelled'].includes(status)) {
    await new Promise((r) => setTimeout(r, 50));
    const b = (await (await fetch(`${stack.url}/v1/batches/${batch.id}`, { headers: auth })).json()) as {
      status: string;
      request_counts: typeof counts;
    };
    status = b.status;
    counts = b.request_counts;
    if (running === undefined && status !== 'validating') running = performance.now();
    if (firstDone === undefined && counts.completed + counts.failed > 0) firstDone = performance.now();
  }
  const tEnd = performance.now();
  const s = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
  console.log(`status ${status}, counts ${JSON.stringify(counts)}`);
  console.log(`upload ${s(tUploaded - t0)} (${(Buffer.byteLength(text) / 1024 / 1024).toFixed(1)} MB)`);
  console.log(`upload done → first line done: ${s((firstDone ?? tEnd) - tUploaded)}`);
  console.log(`validation (upload done → in_progress seen): ${s((running ?? tEnd) - tUploaded)}`);
  console.log(`lines/s end to end (upload start → completed): ${(lines / ((tEnd - t0) / 1000)).toFixed(0)}`);
  console.log(
    `lines/s running (in_progress → completed): ${(lines / ((tEnd - (running ?? t0)) / 1000)).toFixed(0)}`,
  );
  for (const svc of stack.services) console.log(`peak RSS ${svc.name}: ${peakRss(svc.pid).toFixed(0)} MB`);
} finally {
  await stack.stop();
}
