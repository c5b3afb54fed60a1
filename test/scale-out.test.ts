import { monitorEventLoopDelay } from 'node:perf_hooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { until } from '@faregate/testing/env';
import { type Balancer, startHaproxy } from './support/haproxy.ts';
import { assemble, contentOf, jobApi } from './support/jobs.ts';
import { isTerminal, type Message, RawWs } from './support/raw-ws.ts';
import { freePort, type Service, type Stack, startStack } from './support/stack.ts';

/**
 * Many ingresses, many workers, still global: 3 ingress processes behind a real HAProxy and 3
 * worker processes per pool, on one machine. The provider's RPM limit holds across all of them and
 * is used (≥ 0.95 of it); a small balance is never overspent through several ingresses at once; a
 * revoked key is refused by every ingress at once; kill -9 of one ingress and one worker under load
 * loses no accepted job and bills each once; a WebSocket stream started on one ingress resumes on
 * another (and through the balancer) with every frame once. `scripts/scale-demo.sh` runs this and
 * prints the figures.
 */

// The openai pool is rate limited: L calls per W ms across its 3 processes, window padded by G ms.
// G absorbs the delay between a worker's admission and the fake's arrival stamp (the worker's send,
// and this process's event loop stamping it: stalls of 430 ms were seen in CI). Windows of 31 calls
// seen at L = 30 in CI (with G = 200 ms, 1.5 s, 3 s; the last: 31 calls within 1.2 s) were the limiter's own:
// it counted by each process's clock, so a process that read its clock and stalled admitted past
// slots the others had counted; it now counts by Redis's clock (limiter.test.ts shows both).
const L = 30;
const W = 10_000;
const G = 1_500;

let stack: Stack;
let lb: Balancer;
const ingresses: { url: string; service?: Service }[] = [];
const workers: Service[] = [];

beforeAll(async () => {
  // The stack's own ingress, billing and first anthropic worker; the rest started below.
  stack = await startStack({
    providers: ['anthropic'],
    env: { WORKER_LOCK_MS: '4000', WORKER_STALLED_INTERVAL_MS: '1000' },
  });
  ingresses.push({ url: stack.url });
  for (let i = 0; i < 2; i++) {
    const port = await freePort();
    ingresses.push({
      url: `http://127.0.0.1:${port}`,
      service: await stack.start('ingress', { PORT: String(port) }),
    });
  }
  for (let i = 0; i < 2; i++) workers.push(await stack.start('worker:anthropic'));
  // The openai workers keep the default job lock (30 s): the RPM test counts every provider call,
  // and under a loaded CI box the stack's 4 s lock lapsed once, so a job was re-run as after a
  // crash (a second call: 76 for 75 jobs). No test here kills an openai worker (the kill test's
  // victim is an anthropic worker, which keeps the short lock to recover fast).
  const limited = {
    WORKER_RPM: String(L),
    RATE_WINDOW_MS: String(W),
    RATE_GUARD_MS: String(G),
    WORKER_LOCK_MS: '30000',
    WORKER_STALLED_INTERVAL_MS: '15000',
  };
  for (let i = 0; i < 3; i++) workers.push(await stack.start('worker:openai', limited));
  for (const { url } of ingresses) {
    await until(
      async () => {
        const r = await fetch(`${url}/readyz`).catch(() => undefined);
        const body = r?.ok ? ((await r.json()) as { pools: string[] }) : undefined;
        return body?.pools.includes('openai') && body.pools.includes('anthropic');
      },
      { timeoutMs: 240_000, what: `${url} ready with both pools` },
    ).catch(async (e: Error) => {
      const bodies = await Promise.all(
        ingresses.map(
          async (i) => `${i.url}: ${await fetch(`${i.url}/readyz`).then((r) => r.text(), String)}`,
        ),
      );
      throw new Error(`${e.message}\n${bodies.join('\n')}\n${stack.logs().slice(-6000)}`);
    });
  }
  lb = await startHaproxy(
    await freePort(),
    ingresses.map((i) => new URL(i.url).host),
  );
}, 400_000);

afterAll(async () => {
  await lb?.stop();
  await stack?.stop();
});

const json = { 'content-type': 'application/json' };

async function admin(method: string, path: string, body?: unknown) {
  const r = await fetch(`${lb.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${stack.adminToken}`, ...(body === undefined ? {} : json) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: r.status, body: (await r.json()) as Record<string, unknown> };
}

/** A fresh account with `usd` of credit (applied by billing) and a key of its own. */
async function tenant(usd: string): Promise<{ account: string; keyId: string; key: string }> {
  const acc = await admin('POST', '/admin/v1/accounts', { name: 'scale-out' });
  const account = acc.body.id as string;
  expect((await admin('POST', '/admin/v1/credits', { account_id: account, amount_usd: usd })).status).toBe(
    201,
  );
  const k = await admin('POST', '/admin/v1/keys', { account_id: account, name: 'k' });
  await until(
    async () => {
      const r = await stack.sql.query(
        `SELECT 1 FROM credit_commands WHERE account_id = $1 AND status = 'applied'`,
        [account],
      );
      return (r.rowCount ?? 0) > 0;
    },
    { timeoutMs: 30_000, what: 'the credit applied by billing' },
  );
  return { account, keyId: k.body.id as string, key: k.body.key as string };
}

const chat = (base: string, key: string, content: string, extra: Record<string, unknown> = {}) =>
  fetch(`${base}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, ...json },
    body: JSON.stringify({ model: 'openai/gpt-4o-mini', messages: [{ role: 'user', content }], ...extra }),
  });

describe('3 ingresses and 3 workers per pool behind HAProxy', () => {
  it('the RPM limit holds across every process in any window, and ≥ 0.95 of it is used', async () => {
    const jobs = jobApi(lb.url);
    const from = stack.fake.calls().length;
    // The fake stamps arrivals on this process's event loop: how late a stamp can be, for the record.
    const delay = monitorEventLoopDelay({ resolution: 10 });
    delay.enable();
    const n = Math.round(2.5 * L);
    const ids = await Promise.all(
      Array.from({ length: n }, (_, i) => jobs.submit(stack.apiKey, `rpm ${i}`, 'openai/gpt-4o-mini')),
    );
    for (const id of ids) expect((await jobs.finished(stack.apiKey, id, 60_000)).status).toBe('completed');
    const times = stack.fake
      .calls()
      .slice(from)
      .filter((c) => c.provider === 'openai' && c.model !== null)
      .map((c) => c.at)
      .sort((a, b) => a - b);
    const statuses = stack.fake
      .calls()
      .slice(from)
      .map((c) => `${c.provider} ${c.status}`);
    expect(times, `the calls' statuses: ${statuses.join(', ')}`).toHaveLength(n);
    let busiest = 0;
    let busiestFrom = 0;
    for (const t of times) {
      const inWindow = times.filter((u) => u >= t && u < t + W).length;
      if (inWindow > busiest) [busiest, busiestFrom] = [inWindow, t];
    }
    const lag = delay.max / 1e6;
    delay.disable();
    // On failure: every call's stamp (ms after the first) and the stamping process's worst stall.
    const stamps = times.map((t) => t - (times[0] ?? 0)).join(' ');
    expect(
      busiest,
      `busiest window from +${busiestFrom - (times[0] ?? 0)} ms; stamps ${stamps}; event loop stalled ≤ ${lag.toFixed(0)} ms`,
    ).toBeLessThanOrEqual(L);
    // Achieved: the calls made in the first two windows after the first, against the 2 L allowed.
    const t0 = times[0] ?? 0;
    const achieved = times.filter((t) => t < t0 + 2 * W).length / (2 * L);
    console.log(
      `scale-out: RPM limit ${L}/${W} ms, busiest window ${busiest}, achieved ${achieved.toFixed(3)} L, stamping stalled ≤ ${lag.toFixed(0)} ms`,
    );
    expect(achieved).toBeGreaterThanOrEqual(0.95);
  }, 90_000);

  it('a small balance is never overspent by concurrent requests through every ingress', async () => {
    // 400 micro-dollars; each request holds about 60 (max_tokens 40, two calls' worth) while it runs.
    const credit = 400n;
    const t = await tenant('0.0004');
    const answers = await Promise.all(
      Array.from({ length: 60 }, (_, i) => chat(lb.url, t.key, `budget ${i}`, { max_tokens: 40 })),
    );
    const statuses = answers.map((a) => a.status);
    const ok = statuses.filter((s) => s === 200).length;
    // Some got through and some were refused for the balance; nothing else.
    expect(ok).toBeGreaterThan(0);
    expect(statuses.filter((s) => s === 402 || s === 429).length).toBeGreaterThan(0);
    // (503 with retry-after: the gateway shed load on a busy machine, also a refusal before any call.)
    expect(statuses.filter((s) => ![200, 402, 429, 503].includes(s))).toEqual([]);
    // Once billing settled every answered request: the settled total is within the credit.
    const settled = await until(
      async () => {
        const r = await stack.sql.query<{ n: number; cost: string }>(
          'SELECT count(*) FILTER (WHERE final)::int AS n, coalesce(sum(cost_micros), 0)::text AS cost FROM usage_events WHERE account_id = $1',
          [t.account],
        );
        return (r.rows[0]?.n ?? 0) >= ok ? r.rows[0] : undefined;
      },
      { timeoutMs: 30_000, what: 'every answered request settled' },
    );
    console.log(`scale-out: balance ${credit} µ$, ${ok}/60 answered, settled ${settled.cost} µ$`);
    expect(Number(settled.cost)).toBeGreaterThan(0);
    expect(Number(settled.cost)).toBeLessThanOrEqual(Number(credit));
    const bal = await admin('GET', '/admin/v1/balances');
    const row = (bal.body.data as Array<Record<string, string>>).find((x) => x.account_id === t.account);
    expect(BigInt(row?.balance_micros ?? '-1')).toBeGreaterThanOrEqual(0n);
  }, 90_000);

  it('a revoked key is refused by every ingress at once', async () => {
    const t = await tenant('1');
    const models = (url: string) =>
      fetch(`${url}/v1/models`, { headers: { authorization: `Bearer ${t.key}` } }).then((r) => r.status);
    // Every ingress has seen (and cached) the key.
    for (const { url } of ingresses) expect(await models(url)).toBe(200);
    expect((await admin('POST', `/admin/v1/keys/${t.keyId}/revoke`)).status).toBe(200);
    const revokedAt = Date.now();
    await Promise.all(
      ingresses.map(({ url }) =>
        until(async () => (await models(url)) === 401, { timeoutMs: 1_000, what: `${url} refusing the key` }),
      ),
    );
    expect(Date.now() - revokedAt).toBeLessThan(1_000);
    expect((await chat(lb.url, t.key, 'revoked')).status).toBe(401);
  });

  it('a WebSocket stream started on one ingress resumes on another, and through the balancer, every frame once', async () => {
    // ~200 frames over ~1 s: long enough to cut mid-stream twice.
    stack.fake.configure({ provider: 'anthropic', chunkMs: 5, tokens: 200 });
    try {
      const [a, b] = [ingresses[1]?.url ?? '', ingresses[2]?.url ?? ''];
      const c1 = await RawWs.open(a, stack.apiKey);
      c1.send({
        op: 'submit',
        id: 's',
        request: {
          model: 'anthropic/claude-haiku-4-5',
          messages: [{ role: 'user', content: 'a long answer, resumed elsewhere' }],
        },
      });
      const job = (await c1.next((m) => m.type === 'ack' && m.id === 's', 'the submit ack')).job as string;
      // The client processed frames 1..20 on ingress A when its network died.
      await c1.next((m) => m.job === job && (m.seq ?? 0) >= 20, 'frame 20 on ingress A');
      await c1.cut();
      const part1 = c1.frames(job).filter((f) => (f.seq ?? 0) <= 20);
      // It reconnects to ingress B (another process), resumes after 20, and is cut again at 60.
      const c2 = await RawWs.open(b, stack.apiKey);
      c2.send({ op: 'subscribe', job, after: 20 });
      await c2.next((m) => m.job === job && ((m.seq ?? 0) >= 60 || isTerminal(m)), 'frame 60 on ingress B');
      await c2.cut();
      const part2 = c2.frames(job).filter((f) => (f.seq ?? 0) <= 60);
      const last2 = part2.at(-1)?.seq ?? 20;
      // Then through the balancer, wherever it lands, to the end.
      const c3 = await RawWs.open(lb.url, stack.apiKey);
      c3.send({ op: 'subscribe', job, after: last2 });
      await c3.next((m) => m.job === job && isTerminal(m), 'the terminal frame through the balancer');
      await c3.close();
      const all: Message[] = [...part1, ...part2, ...c3.frames(job)];
      const n = all.at(-1)?.seq ?? 0;
      expect(part2[0]?.seq).toBe(21);
      expect(all.map((f) => f.seq)).toEqual(Array.from({ length: n }, (_, i) => i + 1));
      expect(all.at(-1)?.type).toBe('done');
      const stored = await jobApi(lb.url).finished(stack.apiKey, job);
      expect(stored.status).toBe('completed');
      expect(assemble(all)).toBe(contentOf(stored));
      expect(assemble(all).length).toBeGreaterThan(200);
      console.log(
        `scale-out: WebSocket resumed on another ingress and through HAProxy: ${n} frames, each once`,
      );
    } finally {
      stack.fake.configure({ provider: 'anthropic', chunkMs: 0, tokens: 12 });
    }
  }, 60_000);

  it('kill -9 of one ingress and one worker under load loses no accepted job, and bills each once', async () => {
    stack.fake.configure({ provider: 'anthropic', firstByteMs: 300 });
    const jobs = jobApi(lb.url);
    const accepted: string[] = [];
    let refused = 0;
    const submitOne = async (i: number) => {
      try {
        accepted.push(await jobs.submit(stack.apiKey, `kill ${i}`, 'anthropic/claude-haiku-4-5'));
      } catch {
        refused++; // cut by the kill before its 202: the caller knows it was not accepted
      }
    };
    const n = 60;
    let next = 0;
    const victims = [ingresses[2]?.service, workers[1]];
    const lanes = Array.from({ length: 4 }, async () => {
      while (next < n) {
        const i = next++;
        if (i === 20) for (const v of victims) v?.proc.kill('SIGKILL');
        await submitOne(i);
      }
    });
    await Promise.all(lanes);
    expect(victims.every((v) => v?.proc.signalCode === 'SIGKILL' || v?.proc.exitCode !== null)).toBe(true);
    // Most were accepted (a request cut by the kill before its 202 was not: its caller knows).
    expect(accepted.length).toBeGreaterThan(n / 2);
    const statuses = await Promise.all(
      accepted.map(async (id) => (await jobs.finished(stack.apiKey, id, 60_000)).status),
    );
    expect(statuses.every((s) => s === 'completed')).toBe(true);
    // Billed once each: one final usage event per accepted job, none twice.
    await until(
      async () => {
        const r = await stack.sql.query<{ n: number }>(
          'SELECT count(DISTINCT request_id)::int AS n FROM usage_events WHERE final AND request_id = ANY($1)',
          [accepted],
        );
        return r.rows[0]?.n === accepted.length;
      },
      { timeoutMs: 30_000, what: 'every accepted job settled' },
    );
    const twice = await stack.sql.query(
      'SELECT request_id FROM usage_events WHERE final AND request_id = ANY($1) GROUP BY 1 HAVING count(*) <> 1',
      [accepted],
    );
    expect(twice.rows).toEqual([]);
    console.log(
      `scale-out: kill -9 under load: ${accepted.length} accepted, ${refused} cut before their 202, all completed and billed once`,
    );
    stack.fake.configure({ provider: 'anthropic', firstByteMs: 0 });
  }, 120_000);
});
