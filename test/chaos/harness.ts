import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import WebSocket from 'ws';
import { loadGatewayConfig, priceTable } from '@faregate/catalog/gateway-config';
import { checkLedgerInvariants, CLEAN_LEDGER } from '@faregate/db/invariants';
import { createDb } from '@faregate/db/client';
import { rng } from '@faregate/testing/random';
import { TcpProxy } from '@faregate/testing/tcp-proxy';
import { until } from '@faregate/testing/env';
import { freePort, type Stack, startStack } from '../support/stack.ts';

/**
 * The fault campaign's parts: a stack on a Redis of its own (so it can be paused, filled and
 * restarted) and behind a cuttable, slowable Postgres proxy; a seeded mixed workload (JSON, SSE,
 * async jobs followed over WebSocket, all providers); seeded faults; and the invariants, checked by
 * SQL and against what clients saw once the faults are over.
 */

/** A seeded source of choices (replay a run from its seed). */
export interface Rng {
  /** An integer in [0, n). */
  int(n: number): number;
}
export function seeded(seed: number): Rng {
  const next = rng(seed);
  return { int: (n) => Math.floor(next() * n) };
}

/**
 * A redis-server process of the campaign's own, restartable on the same port: with AOF everysec
 * (a kill -9 loses what it had not yet written), or (`snapshots`) with no AOF and a snapshot taken
 * only by `snapshot()`, so that a kill -9 loses exactly the writes since it: a deterministic stand-in
 * for the writes an AOF loses.
 */
export class OwnRedis {
  proc?: ChildProcess;
  readonly dir = mkdtempSync(join(tmpdir(), 'fg-chaos-redis-'));
  readonly port: number;
  readonly #persistence: 'aof' | 'snapshots';
  constructor(port: number, persistence: 'aof' | 'snapshots' = 'aof') {
    this.port = port;
    this.#persistence = persistence;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    this.proc = spawn(
      'redis-server',
      [
        '--port',
        String(this.port),
        '--bind',
        '127.0.0.1',
        '--save',
        '',
        '--appendonly',
        this.#persistence === 'aof' ? 'yes' : 'no',
        '--appendfsync',
        'everysec',
        '--dir',
        this.dir,
        '--maxmemory-policy',
        'noeviction',
      ],
      { stdio: 'ignore' },
    );
    const probe = new Redis(this.url, {
      lazyConnect: true,
      retryStrategy: () => null,
      maxRetriesPerRequest: 0,
    });
    probe.on('error', () => {});
    await until(
      async () => {
        try {
          await probe.connect();
          return (await probe.ping()) === 'PONG';
        } catch {
          probe.disconnect();
          return false;
        }
      },
      { timeoutMs: 10_000, what: `redis-server on :${this.port}` },
    );
    probe.disconnect();
  }

  /** Writes the data set to disk now (`SAVE`): what a restart of a `snapshots` Redis comes back with. */
  async snapshot(): Promise<void> {
    const c = new Redis(this.url, { maxRetriesPerRequest: 0 });
    try {
      await c.save();
    } finally {
      c.disconnect();
    }
  }

  /** kill -9 and start again on the same port and directory (AOF replayed, or the last snapshot loaded). */
  async restart(downMs: number): Promise<void> {
    const p = this.proc;
    if (p && p.exitCode === null) {
      p.kill('SIGKILL');
      await once(p, 'exit');
    }
    await new Promise((r) => setTimeout(r, downMs));
    await this.start();
  }

  async stop(): Promise<void> {
    const p = this.proc;
    if (p && p.exitCode === null) {
      p.kill('SIGKILL');
      await once(p, 'exit');
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export interface Chaos {
  stack: Stack;
  redis: OwnRedis;
  pg: TcpProxy;
  admin: Redis;
  /** Steps a process's wall clock (see clock-preload.ts): `ingress`, `billing`, `worker-openai`, … */
  setClock(process: string, offsetMs: number): void;
  /** Violations a fault saw while it ran (verify() reports them with the rest). */
  found: Array<[keyof Verdict, string]>;
  stop(): Promise<void>;
}

const CLOCK_PRELOAD = fileURLToPath(new URL('./clock-preload.ts', import.meta.url));

export async function startChaos(): Promise<Chaos> {
  const redis = new OwnRedis(await freePort());
  await redis.start();
  // Every service runs with a wall clock the campaign can step (a file per process).
  const clocks = mkdtempSync(join(tmpdir(), 'fg-chaos-clock-'));
  // The services reach the test's Postgres (the machine's or a container) through a proxy faults cut.
  let proxy: TcpProxy | undefined;
  const stack = await startStack({
    providers: ['openai', 'anthropic', 'gemini'],
    redisUrl: redis.url,
    databaseUrl: (url) => {
      proxy = new TcpProxy(new URL(url));
      return proxy.start(url);
    },
    env: {
      FAREGATE_BOOTSTRAP_CREDIT_USD: '1000',
      // Lost work (a killed ingress's hold) is swept in seconds, not minutes.
      REQUEST_TIMEOUT_MS: '20000',
      BILLING_HOLD_SWEEP_MS: '1000',
      RATE_LIMIT_PATIENCE_MS: '1500',
      NODE_OPTIONS: `--import ${CLOCK_PRELOAD}`,
      CHAOS_CLOCK_DIR: clocks,
    },
  });
  const pg = proxy;
  if (!pg) throw new Error('the stack did not ask for its database URL');
  const admin = new Redis(redis.url, { maxRetriesPerRequest: null });
  admin.on('error', () => {});
  return {
    stack,
    redis,
    pg,
    admin,
    found: [],
    setClock(process, offsetMs) {
      // The directory may have been cleaned from under a long run (seen in CI): make it again.
      mkdirSync(clocks, { recursive: true });
      writeFileSync(join(clocks, process), String(offsetMs));
    },
    async stop() {
      admin.disconnect();
      await stack.stop();
      await pg.stop();
      await redis.stop();
      rmSync(clocks, { recursive: true, force: true });
    },
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ─── workload ────────────────────────────────────────────────────────────────────────────────

export type Kind = 'json' | 'sse' | 'job';

export interface Outcome {
  kind: Kind;
  model: string;
  /** The request or job id, once the gateway named it. */
  id?: string;
  /** HTTP status (0: the connection failed before an answer). */
  status: number;
  /** The client saw a complete answer (JSON 200, or SSE through [DONE], or a completed job). */
  complete: boolean;
  /** WS subscriber of a job: the frames' seq it saw, in order. */
  seqs?: number[];
  /** An error answer (status ≥ 400) that is not a clear refusal: not OpenAI's error shape, a 500, or a 429/503 without retry-after. */
  unclear?: string;
  error?: string;
}

const MODELS = ['openai/gpt-4o-mini', 'anthropic/claude-haiku-4-5', 'gemini/gemini-2.5-flash'];

async function one(stack: Stack, rng: Rng, kind: Kind): Promise<Outcome> {
  const model = MODELS[rng.int(MODELS.length)] ?? 'openai/gpt-4o-mini';
  const body = {
    model,
    messages: [{ role: 'user', content: `chaos ${rng.int(1_000_000)}: tell me something` }],
    max_tokens: 20 + rng.int(60),
  };
  const headers = { authorization: `Bearer ${stack.apiKey}`, 'content-type': 'application/json' };
  try {
    if (kind === 'job') return await job(stack, headers, body);
    const r = await fetch(`${stack.url}/v1/chat/completions`, {
      method: 'POST',
      headers,
      body: JSON.stringify({ ...body, stream: kind === 'sse' }),
      signal: AbortSignal.timeout(60_000),
    });
    const id = r.headers.get('x-request-id') ?? undefined;
    const text = await r.text();
    const complete =
      r.status === 200 && (kind === 'json' || /data: \[DONE\]\n\n$/.test(text)) && !text.includes('"error"');
    const unclear = refusal(r, text);
    return {
      kind,
      model,
      ...(id ? { id } : {}),
      status: r.status,
      complete,
      ...(unclear ? { unclear } : {}),
    };
  } catch (e) {
    return { kind, model, status: 0, complete: false, error: String(e) };
  }
}

/** Why an error answer is not a clear refusal (undefined: it is one, or no error). */
function refusal(r: Response, text: string): string | undefined {
  if (r.status < 400) return undefined;
  const what = `${r.status} ${text.slice(0, 200)}`;
  let e: { message?: unknown; type?: unknown } | undefined;
  try {
    e = (JSON.parse(text) as { error?: { message?: unknown; type?: unknown } }).error;
  } catch {
    return `not JSON: ${what}`;
  }
  if (typeof e?.message !== 'string' || typeof e.type !== 'string')
    return `not OpenAI's error shape: ${what}`;
  if (r.status === 500) return `a 500: ${what}`;
  if ((r.status === 429 || r.status === 503) && !r.headers.get('retry-after'))
    return `no retry-after: ${what}`;
  return undefined;
}

/** An async job followed over WebSocket from its first frame, resuming from the last seq if cut. */
async function job(stack: Stack, headers: Record<string, string>, body: object): Promise<Outcome> {
  const model = (body as { model: string }).model;
  const r = await fetch(`${stack.url}/v1/jobs`, {
    method: 'POST',
    headers,
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(30_000),
  });
  if (r.status !== 202) {
    const unclear = refusal(r, await r.text());
    return { kind: 'job', model, status: r.status, complete: false, ...(unclear ? { unclear } : {}) };
  }
  const { id } = (await r.json()) as { id: string };
  const seqs: number[] = [];
  let ended: string | undefined;
  // A subscription the gateway refuses says why as a client can act on it: never an internal error
  // (a store that is down is a 503 to retry, `overloaded`).
  let unclear: string | undefined;
  const deadline = Date.now() + 60_000;
  while (!ended && Date.now() < deadline) {
    const after = seqs.at(-1) ?? 0;
    ended = await new Promise<string | undefined>((resolve) => {
      const ws = new WebSocket(`${stack.url.replace('http', 'ws')}/v1/stream`, { headers });
      const done = (v: string | undefined) => {
        ws.removeAllListeners();
        ws.on('error', () => {});
        ws.terminate();
        resolve(v);
      };
      ws.on('open', () => ws.send(JSON.stringify({ v: 1, op: 'subscribe', job: id, after })));
      ws.on('message', (d) => {
        // Job frames carry their job and seq; the protocol's own replies do not.
        const m = JSON.parse(String(d)) as { type?: string; seq?: number; job?: string };
        if (m.job === id && typeof m.seq === 'number') {
          seqs.push(m.seq);
          if (m.type === 'done' || m.type === 'error') done(m.type);
        } else if (m.type === 'nack') {
          const e = (m as { error?: { code?: unknown; message?: unknown } }).error;
          if (typeof e?.message !== 'string' || e.code === 'internal_error')
            unclear ??= `a nack: ${JSON.stringify(m).slice(0, 200)}`;
          done(undefined);
        }
      });
      ws.on('close', () => done(undefined));
      ws.on('error', () => done(undefined));
    });
    if (!ended) await new Promise((res) => setTimeout(res, 250));
  }
  return {
    kind: 'job',
    model,
    id,
    status: 202,
    complete: ended === 'done',
    seqs,
    ...(unclear ? { unclear } : {}),
  };
}

/** `concurrency` clients, each sending requests of random kinds until `ms` have passed. */
export async function workload(stack: Stack, rng: Rng, ms: number, concurrency: number): Promise<Outcome[]> {
  const out: Outcome[] = [];
  const end = Date.now() + ms;
  const kinds: Kind[] = ['json', 'sse', 'job'];
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (Date.now() < end) {
        const o = await one(stack, rng, kinds[rng.int(kinds.length)] ?? 'json');
        out.push(o);
        // A client that could not connect waits a little before trying again, as clients do.
        if (o.status === 0) await sleep(50);
      }
    }),
  );
  return out;
}

// ─── faults ──────────────────────────────────────────────────────────────────────────────────

export type Fault = (c: Chaos, rng: Rng) => Promise<void>;

function kill9(c: Chaos, name: string): Promise<void> {
  const s = c.stack.services.find(
    (x) => x.name === name && x.proc.exitCode === null && x.proc.signalCode === null,
  );
  if (!s) return Promise.resolve();
  s.proc.kill('SIGKILL');
  return once(s.proc, 'exit').then(() => undefined);
}

/** kill -9 of a process and its restart after a while. */
export const killAndRestart =
  (name: string): Fault =>
  async (c, rng) => {
    await kill9(c, name);
    await sleep(300 + rng.int(1200));
    await c.stack.start(name);
  };

/** Before a scenario: the gateway is whole again (every process up, ready, every pool registered). */
export async function healthy(c: Chaos): Promise<void> {
  await until(
    async () => {
      const r = await fetch(`${c.stack.url}/readyz`).catch(() => undefined);
      if (!r?.ok) return false;
      const body = (await r.json()) as { pools?: string[] };
      return ['openai', 'anthropic', 'gemini'].every((p) => body.pools?.includes(p));
    },
    { timeoutMs: 90_000, intervalMs: 200, what: 'the gateway ready again' },
  );
}

/** Provider faults of every kind the fake knows, scripted for the next calls of one provider. */
export const providerFaults: Fault = async (c, rng) => {
  const kinds = [
    '500',
    '503',
    '429',
    'cut_mid_stream',
    'cut_after_burst',
    'malformed_sse',
    'slow_stream',
    'hang_before_headers',
    'inband_error',
  ] as const;
  for (const provider of ['openai', 'anthropic', 'gemini']) {
    const faults = Array.from({ length: 2 + rng.int(4) }, () => {
      const fault = kinds[rng.int(kinds.length)] ?? '500';
      return {
        fault,
        ...(fault === '429' ? { retryAfterMs: 300 + rng.int(900) } : {}),
        ...(fault === 'slow_stream' ? { chunkMs: 50 } : {}),
      };
    });
    await fetch(`${c.stack.fake.url}/_control/faults`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ provider, faults }),
    });
  }
};

/** Redis stops answering writes for a while (CLIENT PAUSE), then goes on. */
export const redisPause: Fault = async (c, rng) => {
  await c.admin.call('CLIENT', 'PAUSE', String(500 + rng.int(1500)), 'WRITE');
};

/** Redis killed (-9) and restarted from its AOF (everysec). */
export const redisRestart: Fault = async (c, rng) => {
  await c.redis.restart(200 + rng.int(800));
};

/** Postgres unreachable for a while (every connection reset, new ones refused). */
export const postgresDown: Fault = async (c, rng) => {
  c.pg.cut();
  await sleep(1000 + rng.int(2000));
  c.pg.restore();
};

/** Postgres slow: every byte each way held 50–200 ms for a while. */
export const postgresSlow: Fault = async (c, rng) => {
  c.pg.delayMs = 50 + rng.int(150);
  await sleep(2000 + rng.int(2000));
  c.pg.delayMs = 0;
};

/**
 * Wall clocks stepped by minutes, forward or back, in some of the processes that use time (the
 * ingress, billing, workers), held a few seconds under load, then stepped back (an NTP correction).
 */
export const clockJump: Fault = async (c, rng) => {
  const names = ['ingress', 'billing', 'worker-openai', 'worker-anthropic', 'worker-gemini'];
  let chosen = names.filter(() => rng.int(2) === 0);
  if (chosen.length === 0) chosen = [names[rng.int(names.length)] ?? 'billing'];
  const { sql } = c.stack;
  // A live hold of no request, due in 90 s by Postgres's clock: no sweep may take it early.
  const sentinel = `req_clock_sentinel_${Date.now()}`;
  await sql.query(
    `INSERT INTO holds (request_id, account_id, key_id, amount_micros, expires_at)
     SELECT $1, account_id, id, 1, now() + interval '90 seconds' FROM api_keys LIMIT 1`,
    [sentinel],
  );
  const offsets = chosen.map((n) => [n, (rng.int(2) === 0 ? 1 : -1) * (2 + rng.int(9)) * 60_000] as const);
  for (const [n, ms] of offsets) c.setClock(n, ms);
  const holdMs = 2000 + rng.int(2000);
  const seen = new Set<string>();
  // Meanwhile, every hold placed must count (not expired at birth, whatever the ingress's clock says).
  for (const end = Date.now() + holdMs; Date.now() < end; ) {
    const q = await sql.query<{ id: string }>(
      `SELECT request_id AS id FROM holds WHERE expires_at <= created_at + interval '2 seconds'`,
    );
    for (const r of q.rows.filter((r) => !seen.has(r.id))) {
      seen.add(r.id);
      c.found.push(['holds', `hold ${r.id} expired at birth (clocks ${JSON.stringify(offsets)})`]);
    }
    await sleep(200);
  }
  for (const n of chosen) c.setClock(n, 0);
  // One more sweep (every second) with every clock right again, then the sentinel must still be there.
  await sleep(1500);
  const kept = await sql.query('DELETE FROM holds WHERE request_id = $1', [sentinel]);
  if (kept.rowCount !== 1)
    c.found.push(['holds', `a live hold was swept before its expiry (clocks ${JSON.stringify(offsets)})`]);
};

/**
 * Redis reaches `maxmemory` (noeviction): the limit is set just above what it uses, so the load fills
 * it within moments and every write is refused with OOM; after a while memory is freed (the limit
 * lifted) and the gateway must serve again.
 */
export const redisFull: Fault = async (c, rng) => {
  const used = Number(/used_memory:(\d+)/.exec(await c.admin.info('memory'))?.[1]);
  await c.admin.config('SET', 'maxmemory', String(used + 64 * 1024));
  await sleep(1500 + rng.int(2500));
  await c.admin.config('SET', 'maxmemory', '0');
};

/** Several at once. */
export const together =
  (...faults: Fault[]): Fault =>
  async (c, rng) => {
    await Promise.all(faults.map((f) => f(c, rng)));
  };

// ─── invariants ──────────────────────────────────────────────────────────────────────────────

export interface Verdict {
  /** Every request the clients made ended with an answer or an error (no hang). */
  noRequestLost: string[];
  /** Every job the gateway recorded reached a terminal state. */
  jobsTerminal: string[];
  /** Every answer a client saw complete was billed, exactly once as a success. */
  completeBilled: string[];
  /** Each usage event's cost is its tokens at the listed price. */
  listedPrice: string[];
  /** Transactions sum to zero, balances equal their entries, settlement legs equal their events. */
  ledger: string[];
  /** No hold past its expiry left behind. */
  holds: string[];
  /** Every WS subscriber saw every frame of its job once, in order. */
  framesOnce: string[];
  /** Every refusal was clear: OpenAI's error shape, never a 500, retry-after on 429 and 503. */
  clearRefusals: string[];
}

export const INVARIANTS: Array<keyof Verdict> = [
  'noRequestLost',
  'jobsTerminal',
  'completeBilled',
  'listedPrice',
  'ledger',
  'holds',
  'framesOnce',
  'clearRefusals',
];

/** A verdict with no violation (what every run must end with). */
export const cleanVerdict = (): Verdict => ({
  noRequestLost: [],
  jobsTerminal: [],
  completeBilled: [],
  listedPrice: [],
  ledger: [],
  holds: [],
  framesOnce: [],
  clearRefusals: [],
});

const prices = priceTable(loadGatewayConfig(undefined, {}));

/** Waits until the gateway is quiet (jobs ended, billing caught up, expired holds swept), then checks. */
export async function verify(c: Chaos, outcomes: Outcome[]): Promise<Verdict> {
  const { stack } = c;
  const v = cleanVerdict();
  for (const [k, what] of c.found.splice(0)) v[k].push(what);
  for (const o of outcomes) {
    if (o.status === 0 && o.error && /timeout|aborted/i.test(o.error))
      v.noRequestLost.push(`${o.kind} ${o.model}: ${o.error}`);
    if (o.unclear) v.clearRefusals.push(`${o.kind} ${o.model}: ${o.unclear}`);
  }
  // Every job record the gateway wrote reaches a final state (sync ones too, while their record lives).
  const metaKeys = async () => {
    const keys: string[] = [];
    let cursor = '0';
    do {
      const [next, batch] = await c.admin.scan(cursor, 'MATCH', `${stack.prefix}:*:m`, 'COUNT', 1000);
      cursor = next;
      keys.push(...batch);
    } while (cursor !== '0');
    return keys;
  };
  const t0 = Date.now();
  const phase = (what: string) => {
    if (process.env.CHAOS_VERBOSE) console.log(`${what}: ${Date.now() - t0} ms`);
  };
  const open = await until(
    async () => {
      const states = await Promise.all(
        (await metaKeys()).map(async (k) => [k, await c.admin.hget(k, 'state')] as const),
      );
      const running = states.filter(
        ([, s]) => s !== null && !['completed', 'failed', 'cancelled'].includes(s),
      );
      return running.length === 0 ? [] : Date.now() > quietBy ? running : false;
    },
    { timeoutMs: 90_000, intervalMs: 250, what: 'every job terminal' },
  ).catch(() => [['(timed out)', '']] as const);
  // A job left open is one violation, reported by the run that left it (not by every later run).
  for (const [k, s] of open) if (!reportedOpen.has(k)) v.jobsTerminal.push(`${k} ${s}`);
  for (const [k] of open) reportedOpen.add(k);
  phase('jobs terminal');

  // Billing caught up: every complete answer's success event settled.
  const complete = outcomes.filter((o) => o.complete && o.id);
  const ids = complete.map((o) => o.id as string);
  const settled = await until(
    async () => {
      const q = await stack.sql.query<{ request_id: string; n: string }>(
        "SELECT request_id, count(*)::text AS n FROM usage_events WHERE outcome = 'success' AND request_id = ANY($1) GROUP BY 1",
        [ids],
      );
      return q.rows.length >= new Set(ids).size ? q.rows : Date.now() > quietBy ? q.rows : false;
    },
    { timeoutMs: 90_000, intervalMs: 250, what: 'settlement of every complete answer' },
  );
  phase('complete answers settled');
  const count = new Map(settled.map((r) => [r.request_id, Number(r.n)]));
  for (const id of new Set(ids))
    if (count.get(id) !== 1) v.completeBilled.push(`${id}: ${count.get(id) ?? 0} success events`);

  const events = await stack.sql.query<{
    id: string;
    provider: string;
    model: string;
    input_tokens: number;
    cached_input_tokens: number;
    cache_write_tokens: number;
    output_tokens: number;
    cost: string;
    unpriced: boolean;
    at: Date;
  }>(
    `SELECT id, provider, model, input_tokens, cached_input_tokens, cache_write_tokens, output_tokens,
            cost_micros::text AS cost, unpriced, occurred_at AS at FROM usage_events`,
  );
  for (const e of events.rows) {
    const want = prices.callCostMicros(
      e.provider,
      e.model,
      {
        inputTokens: e.input_tokens,
        cachedInputTokens: e.cached_input_tokens,
        cacheWriteTokens: e.cache_write_tokens,
        outputTokens: e.output_tokens,
      },
      e.at.getTime(),
    );
    if (e.unpriced || want === undefined || want !== BigInt(e.cost))
      v.listedPrice.push(`${e.id}: ${e.cost} ≠ ${want}`);
  }

  const { db, close } = createDb(stack.databaseUrl, { max: 2 });
  const ledger = await checkLedgerInvariants(db).finally(() => close());
  for (const [k, val] of Object.entries(ledger)) {
    const clean = CLEAN_LEDGER[k as keyof typeof CLEAN_LEDGER];
    if (JSON.stringify(val, big) !== JSON.stringify(clean, big))
      v.ledger.push(`${k}: ${JSON.stringify(val, big)}`);
  }

  const holds = await until(
    async () => {
      const q = await stack.sql.query<{ id: string }>(
        'SELECT request_id AS id FROM holds WHERE expires_at < now()',
      );
      return q.rows.length === 0 ? [] : Date.now() > quietBy + 10_000 ? q.rows : false;
    },
    { timeoutMs: 90_000, intervalMs: 500, what: 'expired holds swept' },
  );
  for (const h of holds) v.holds.push(`hold ${h.id} past its expiry`);
  phase('holds swept');

  for (const o of outcomes) {
    if (!o.seqs) continue;
    const want = Array.from({ length: o.seqs.length }, (_, i) => i + 1);
    if (JSON.stringify(o.seqs) !== JSON.stringify(want)) v.framesOnce.push(`${o.id}: ${o.seqs.join(',')}`);
  }
  return v;
}

const reportedOpen = new Set<string>();

/** How long checks wait for the gateway to settle down before reporting what is still open. */
let quietBy = 0;
export function quietWithin(ms: number): void {
  quietBy = Date.now() + ms;
}

const big = (_k: string, x: unknown) => (typeof x === 'bigint' ? x.toString() : x);
