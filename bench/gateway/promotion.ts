/**
 * What the ingress's requests leave in the young generation: `node bench/gateway/promotion.ts
 * [--seconds 15] [--env K=V]`. At one connection the gateway's p99 is set by scavenge pauses, and a
 * scavenge takes as long as what it copies: what is still alive when it runs, or which it promotes.
 *
 * The stack as `pnpm start` runs it (the shipped routing file, the openai pool hosted by the ingress
 * as well as in its worker), driven one request at a time over one keep-alive connection. The
 * ingress's allocations are sampled by V8's sampling heap profiler (the inspector, opened with
 * SIGUSR1) twice, in two windows of the same length: every allocation, then only the allocations a
 * scavenge did not free (`includeObjectsCollectedByMinorGC: false`: promoted, or still young and
 * alive at the end; what a full GC frees later is kept in). Prints the sampled bytes of each, their
 * ratio (the share of allocation that outlives a scavenge), and the allocation sites ranked by what
 * outlived a scavenge, each with its share of every allocation (a site whose share of the survivors
 * is many times its share of allocation holds something past its request), then by all allocation.
 */
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';
import { parseEnvArgs, startBenchStack } from '../support/stack.ts';

const { values: argv } = parseArgs({
  options: {
    seconds: { type: 'string', default: '15' },
    top: { type: 'string', default: '25' },
    env: { type: 'string', multiple: true, default: [] },
    'ingress-flag': { type: 'string', multiple: true, default: [] },
  },
});
const WINDOW_MS = Number(argv.seconds) * 1000;
const TOP = Number(argv.top);
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const INSPECT_PORT = 9329;

console.log(`$ node bench/gateway/promotion.ts ${process.argv.slice(2).join(' ')}`.trimEnd());
const stack = await startBenchStack({
  env: {
    FAREGATE_CONFIG: `${ROOT}faregate.config.json`,
    INGRESS_POOLS: 'openai',
    OPENAI_RPM: '1000000',
    ...parseEnvArgs(argv.env),
  },
  nodeArgs: { ingress: [`--inspect-port=127.0.0.1:${INSPECT_PORT}`, ...argv['ingress-flag']] },
});

interface ProfileNode {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children: ProfileNode[];
}

/** One inspector session on the ingress (opened by SIGUSR1 on the port given at start). */
async function inspector(pid: number) {
  process.kill(pid, 'SIGUSR1');
  let target: string | undefined;
  for (const end = Date.now() + 10_000; !target && Date.now() < end; ) {
    try {
      const list = (await (await fetch(`http://127.0.0.1:${INSPECT_PORT}/json/list`)).json()) as Array<{
        webSocketDebuggerUrl: string;
      }>;
      target = list[0]?.webSocketDebuggerUrl;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  if (!target) throw new Error('the ingress did not open its inspector');
  const ws = new WebSocket(target);
  await new Promise((resolve, reject) => {
    ws.addEventListener('open', resolve, { once: true });
    ws.addEventListener('error', reject, { once: true });
  });
  let next = 0;
  const waiting = new Map<number, (result: unknown) => void>();
  ws.addEventListener('message', (m) => {
    const d = JSON.parse(String(m.data)) as { id?: number; result?: unknown };
    if (d.id !== undefined) waiting.get(d.id)?.(d.result);
  });
  const call = <T>(method: string, params: object = {}) =>
    new Promise<T>((resolve) => {
      const id = ++next;
      waiting.set(id, (r) => resolve(r as T));
      ws.send(JSON.stringify({ id, method, params }));
    });
  await call('HeapProfiler.enable');
  return {
    /** Sampled allocation over `ms`, by site (function, file:line), in bytes. */
    async sample(ms: number, survivorsOnly: boolean): Promise<Map<string, number>> {
      await call('HeapProfiler.startSampling', {
        samplingInterval: 4096,
        includeObjectsCollectedByMajorGC: true,
        includeObjectsCollectedByMinorGC: !survivorsOnly,
      });
      await new Promise((r) => setTimeout(r, ms));
      const { profile } = await call<{ profile: { head: ProfileNode } }>('HeapProfiler.stopSampling');
      const sites = new Map<string, number>();
      const siteOf = (n: ProfileNode): string => {
        const f = n.callFrame;
        const file = f.url
          .replace(/^file:\/\//, '')
          .replace(ROOT, '')
          .replace(/.*node_modules\/\.pnpm\//, '');
        return `${f.functionName || '(anonymous)'} ${file || '(native)'}:${f.lineNumber + 1}`;
      };
      // A native function's allocation (a Map's delete, an array's flat) is named with its caller.
      const walk = (n: ProfileNode, caller: string) => {
        const own = siteOf(n);
        const site = n.callFrame.url ? own : `${own} < ${caller}`;
        if (n.selfSize > 0) sites.set(site, (sites.get(site) ?? 0) + n.selfSize);
        for (const c of n.children) walk(c, n.callFrame.url ? own : caller);
      };
      walk(profile.head, '(root)');
      return sites;
    },
    close: () => ws.close(),
  };
}

const pool = new Pool(stack.url, { connections: 1, pipelining: 1 });
const body = JSON.stringify({
  model: 'gpt-4o-mini',
  messages: [{ role: 'user', content: 'In one short sentence, what is the largest planet?' }],
  max_tokens: 16,
});
const send = async () => {
  const r = await pool.request({
    path: '/v1/chat/completions',
    method: 'POST',
    headers: { authorization: `Bearer ${stack.apiKey}`, 'content-type': 'application/json' },
    body,
  });
  await r.body.text();
  if (r.statusCode !== 200) throw new Error(`status ${r.statusCode}`);
};

let running = true;
let sent = 0;
const load = (async () => {
  while (running) {
    await send();
    sent++;
  }
})();

try {
  for (let i = 0; i < 2000; i++) await send(); // warm up (JIT, pools, leases)
  const ingress = stack.services.find((s) => s.name === 'ingress');
  if (!ingress) throw new Error('no ingress in the stack');
  const insp = await inspector(ingress.pid);
  const t0 = performance.now();
  const n0 = sent;
  const all = await insp.sample(WINDOW_MS, false);
  const n1 = sent;
  const kept = await insp.sample(WINDOW_MS, true);
  const n2 = sent;
  const seconds = (performance.now() - t0) / 2000;
  insp.close();
  const sum = (m: Map<string, number>) => [...m.values()].reduce((a, b) => a + b, 0);
  const [allBytes, keptBytes] = [sum(all), sum(kept)];
  const perReq = (bytes: number, n: number) => (n > 0 ? `${(bytes / n / 1024).toFixed(1)} KiB/request` : '');
  console.log(
    `requests: ${n1 - n0} then ${n2 - n1} in two ${seconds.toFixed(1)} s windows (${Math.round((n2 - n0) / (2 * seconds))} req/s at 1 connection)`,
  );
  console.log(
    `ingress allocation (sampled): ${(allBytes / 1e6).toFixed(1)} MB, ${perReq(allBytes, n1 - n0)}`,
  );
  console.log(
    `outlived a scavenge: ${(keptBytes / 1e6).toFixed(1)} MB, ${perReq(keptBytes, n2 - n1)}: ` +
      `${((100 * keptBytes) / (n2 - n1) / (allBytes / (n1 - n0))).toFixed(1)} % of allocation per request`,
  );
  console.log(`\nsites by what outlived a scavenge (share of survivors | share of all allocation):`);
  const ranked = [...kept].sort((a, b) => b[1] - a[1]).slice(0, TOP);
  for (const [site, bytes] of ranked) {
    const ofKept = (100 * bytes) / keptBytes;
    const ofAll = (100 * (all.get(site) ?? 0)) / allBytes;
    console.log(`${ofKept.toFixed(1).padStart(6)} % | ${ofAll.toFixed(1).padStart(5)} %  ${site}`);
  }
  console.log(`\nsites by all allocation (KiB per request | share of all allocation):`);
  for (const [site, bytes] of [...all].sort((a, b) => b[1] - a[1]).slice(0, TOP)) {
    const kib = bytes / (n1 - n0) / 1024;
    console.log(
      `${kib.toFixed(2).padStart(6)} | ${((100 * bytes) / allBytes).toFixed(1).padStart(5)} %  ${site}`,
    );
  }
} finally {
  running = false;
  await load.catch(() => {});
  await pool.close();
  await stack.stop();
}
