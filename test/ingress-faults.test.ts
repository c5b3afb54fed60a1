import { once } from 'node:events';
import { type IncomingMessage, request } from 'node:http';
import { connect } from 'node:net';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { until } from '@faregate/testing/env';
import { TcpProxy } from '@faregate/testing/tcp-proxy';
import { jobApi } from './support/jobs.ts';
import { freePort, type Stack, startStack } from './support/stack.ts';

/**
 * Faults seen from outside the ingress, against the real services: Postgres unreachable while
 * requests are admitted, SSE callers whose connection is reset mid-answer, and replayed streams.
 */

let stack: Stack;
let proxy: TcpProxy;
let api: ReturnType<typeof jobApi>;
let client: OpenAI;

beforeAll(async () => {
  stack = await startStack({ providers: ['openai'] });
  // Only the ingress reaches Postgres through the proxy: billing keeps settling during an outage.
  const target = new URL(stack.databaseUrl);
  proxy = new TcpProxy(target);
  const proxied = await proxy.start(stack.databaseUrl);
  const first = stack.services.find((s) => s.name === 'ingress');
  if (!first) throw new Error('no ingress');
  first.proc.kill('SIGTERM');
  await once(first.proc, 'exit');
  // A lease covers two requests the size of the one that took it: a bigger request needs Postgres.
  await stack.start('ingress', { DATABASE_URL: proxied, BUDGET_LEASE_REQUESTS: '2' });
  await until(async () => (await fetch(`${stack.url}/readyz`).catch(() => undefined))?.ok, {
    timeoutMs: 60_000,
    what: 'ingress behind the proxy ready',
  });
  api = jobApi(stack.url);
  client = new OpenAI({ apiKey: stack.apiKey, baseURL: `${stack.url}/v1`, maxRetries: 0 });
}, 120_000);

afterAll(async () => {
  await proxy?.stop();
  await stack?.stop();
});

const chat = (content: string, extra: Record<string, unknown> = {}) =>
  fetch(`${stack.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${stack.apiKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content }], ...extra }),
  });

const heldMicros = async () =>
  BigInt((await stack.sql.query('SELECT coalesce(sum(amount_micros), 0)::text AS s FROM holds')).rows[0].s);

type Usage = { outcome: string; output_tokens: number };
const usageOf = async (id: string) =>
  (
    await stack.sql.query<Usage>(
      'SELECT outcome, output_tokens FROM usage_events WHERE request_id = $1 ORDER BY hop, attempt',
      [id],
    )
  ).rows;

describe('Postgres unreachable during admission', () => {
  it('answers 503 with retry-after, admits again afterwards, and gives the lease rest back', async () => {
    // A small request takes a lease. (The key is now cached for a second: key lookups during an
    // outage are not this test's subject, admission is.)
    const warm = await chat('warm up', { max_tokens: 8 });
    expect(warm.status).toBe(200);
    proxy.cut();
    try {
      // Too big for what is left of the lease: admission must reach Postgres, which is gone.
      const r = await chat('while the database is down');
      const body = (await r.json()) as { error?: Record<string, unknown> };
      expect(r.status).toBe(503);
      expect(Number(r.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
      expect(body.error).toMatchObject({ type: 'server_error', code: 'overloaded', param: null });
      expect(body.error?.message).toMatch(/database/);
      // The lease was retired, and its rest could not be given back yet.
      expect(await heldMicros()).toBeGreaterThan(0n);
    } finally {
      proxy.restore();
    }
    // The outage retired the lease without being able to give its rest back: it is given back now,
    // and nothing is held once the warm-up request is settled (nothing is in flight).
    await until(async () => (await heldMicros()) === 0n, { timeoutMs: 20_000, what: 'holds back to 0' });
    const after = await chat('after the outage', { max_tokens: 8 });
    expect(after.status).toBe(200);
  });
});

describe('Postgres unreachable when a key must be looked up', () => {
  it('answers 503 with retry-after (not 500), and the key works once Postgres is back', async () => {
    const admin = (path: string, body: unknown) =>
      fetch(`${stack.url}${path}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${stack.adminToken}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      }).then((r) => r.json() as Promise<Record<string, string>>);
    const acct = await admin('/admin/v1/accounts', { name: 'outage' });
    await admin('/admin/v1/credits', { account_id: acct.id, amount_usd: '1' });
    const { key } = await admin('/admin/v1/keys', { account_id: acct.id, name: 'never used' });
    const models = () => fetch(`${stack.url}/v1/models`, { headers: { authorization: `Bearer ${key}` } });
    proxy.cut();
    try {
      const r = await models();
      expect(r.status).toBe(503);
      expect(Number(r.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
      expect(((await r.json()) as { error: { code: string } }).error.code).toBe('overloaded');
    } finally {
      proxy.restore();
    }
    await until(async () => (await models()).status === 200, {
      timeoutMs: 10_000,
      what: 'the key accepted again',
    });
  });
});

interface RawSse {
  id: string;
  status: number;
  text: () => string;
  res: IncomingMessage;
  reset: () => void;
}

/** A streamed chat request on a raw socket, resolved once its first content chunk arrived. */
function openSse(content: string, headers: Record<string, string> = {}): Promise<RawSse> {
  return new Promise((resolve, reject) => {
    const req = request(`${stack.url}/v1/chat/completions`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${stack.apiKey}`,
        'content-type': 'application/json',
        ...headers,
      },
    });
    req.on('error', () => {}); // the test resets the socket itself
    req.on('response', (res) => {
      let text = '';
      res.on('error', () => {});
      res.on('data', (c: Buffer) => {
        text += c.toString();
        if (/"delta":\{"content":"[^"]/.test(text)) {
          resolve({
            id: String(res.headers['x-request-id']),
            status: res.statusCode ?? 0,
            text: () => text,
            res,
            reset: () => req.socket?.resetAndDestroy(),
          });
        }
      });
      res.on('end', () => reject(new Error(`stream ended before content: ${text}`)));
    });
    req.end(JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content }], stream: true }));
  });
}

/** The fake's record of the one streamed call made since `from` calls. */
const callAfter = (from: number) =>
  stack.fake
    .calls()
    .slice(from)
    .filter((c) => c.stream)[0];

/** A request that takes ~100 ms at the fake: a stream still running would grow meanwhile. */
async function barrier(): Promise<void> {
  const r = await chat('[[fake:{"fault":"slow_stream","chunkMs":25,"tokens":4}]] barrier', { max_tokens: 8 });
  await r.text();
}

describe('SSE callers whose connection is reset', () => {
  const SLOW = (n: number) => `[[fake:{"fault":"slow_stream","chunkMs":25,"tokens":${n}}]]`;

  it('a reset after content cancels the job, aborts the provider call, and bills only what was generated', async () => {
    const from = stack.fake.calls().length;
    const sse = await openSse(`${SLOW(400)} a long answer, reset after the first words`);
    expect(sse.status).toBe(200);
    sse.reset();
    const job = await api.finished(stack.apiKey, sse.id);
    expect(job.status).toBe('cancelled');
    const rows = await until(
      async () => {
        const u = await usageOf(sse.id);
        return u.length > 0 ? u : undefined;
      },
      { what: 'usage of the reset stream' },
    );
    expect(rows.at(-1)?.outcome).toBe('cancelled');
    const billed = rows.reduce((n, r) => n + r.output_tokens, 0);
    expect(billed).toBeGreaterThan(0);
    expect(billed).toBeLessThan(400);
    // The provider call was aborted: it stopped short of the answer and does not grow any more.
    const sent = callAfter(from)?.completionTokens ?? 0;
    expect(sent).toBeLessThan(400);
    await barrier();
    expect(callAfter(from)?.completionTokens).toBe(sent);
  });

  it('a provider failure after content ends the stream with that error, and no other call is made or billed', async () => {
    // The call breaks mid-answer. This caller already has content and SSE cannot take it back, so
    // the failure is the answer: no retry (the provider answers at once, so a retry would finish,
    // billed in full, before any cancel could reach it) and no fallback.
    for (const idempotencyKey of [undefined, 'cut-after-content-1']) {
      stack.fake.script('openai', [{ fault: 'cut_mid_stream', afterChunks: 3 }]);
      const from = stack.fake.calls().length;
      const sse = await openSse(
        `[[fake:{"tokens":400}]] an answer that breaks ${idempotencyKey ?? ''}`,
        idempotencyKey ? { 'idempotency-key': idempotencyKey } : {},
      );
      await new Promise<void>((resolve) => {
        if (sse.res.complete) resolve();
        sse.res.on('end', resolve);
        sse.res.on('close', resolve);
      });
      expect(sse.text()).toMatch(/"code":"upstream_error"/);
      const job = await api.finished(stack.apiKey, sse.id);
      expect(job.status).toBe('failed');
      const rows = await until(
        async () => {
          const u = await usageOf(sse.id);
          return u.some((r) => r.outcome === 'failed') ? u : undefined;
        },
        { what: 'final usage of the broken stream' },
      );
      // The broken call's partial answer, billed once; nothing else (the barrier's call is not streamed).
      expect(rows, JSON.stringify(rows)).toHaveLength(1);
      expect(rows[0]!.output_tokens).toBeGreaterThan(0);
      expect(rows[0]!.output_tokens).toBeLessThan(400);
      await barrier();
      expect(
        stack.fake
          .calls()
          .slice(from)
          .filter((c) => c.stream),
      ).toHaveLength(1);
      expect(await usageOf(sse.id)).toHaveLength(1);
    }
  });

  it('with an Idempotency-Key, a reset stream runs on, and its replay is marked Idempotent-Replayed', async () => {
    const sse = await openSse(`${SLOW(40)} keep going without me`, { 'idempotency-key': 'reset-kept-1' });
    sse.reset();
    const job = await api.finished(stack.apiKey, sse.id);
    expect(job.status).toBe('completed');
    const { data, response } = await client.chat.completions
      .create(
        {
          model: 'gpt-4o-mini',
          messages: [{ role: 'user', content: `${SLOW(40)} keep going without me` }],
          stream: true,
        },
        { headers: { 'Idempotency-Key': 'reset-kept-1' } },
      )
      .withResponse();
    expect(response.headers.get('idempotent-replayed')).toBe('true');
    expect(response.headers.get('x-request-id')).toBe(sse.id);
    let text = '';
    for await (const c of data) text += c.choices[0]?.delta?.content ?? '';
    expect(text).toBe(job.result?.choices[0]?.message.content);
  });
});

describe('shutdown', () => {
  it('SIGTERM closes WebSockets with 1001 and exits 0, even when a client never answers the close frame', async () => {
    const port = await freePort();
    const ingress = await stack.start('ingress', { PORT: String(port) });
    await until(async () => (await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => undefined))?.ok, {
      timeoutMs: 60_000,
      what: 'second ingress ready',
    });
    // A raw socket: it completes the upgrade, then reads and never answers (a hung or half-gone
    // client; a library client would answer the close frame itself).
    const socket = connect(port, '127.0.0.1');
    let received = Buffer.alloc(0);
    socket.on('data', (d) => {
      received = Buffer.concat([received, d]);
    });
    socket.on('error', () => {});
    socket.write(
      [
        'GET /v1/stream HTTP/1.1',
        `Host: 127.0.0.1:${port}`,
        'Upgrade: websocket',
        'Connection: Upgrade',
        'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
        'Sec-WebSocket-Version: 13',
        `Authorization: Bearer ${stack.apiKey}`,
        '',
        '',
      ].join('\r\n'),
    );
    await until(async () => (received.includes('101 Switching Protocols') ? true : undefined), {
      what: 'the upgrade',
    });
    const upgraded = received.indexOf('\r\n\r\n') + 4;
    const exited = once(ingress.proc, 'exit');
    ingress.proc.kill('SIGTERM');
    // The close frame: opcode 8, then the code 1001 (going away).
    const close = await until(
      async () => {
        const frames = received.subarray(upgraded);
        const at = frames.indexOf(0x88);
        return at >= 0 && frames.length >= at + 4 ? frames.readUInt16BE(at + 2) : undefined;
      },
      { what: 'the close frame' },
    );
    expect(close).toBe(1001);
    // Exits on its own (a drain held by the socket ended in SIGKILL from `pnpm start` after 30 s).
    const [code] = await Promise.race([
      exited,
      new Promise<never>((_, reject) =>
        setTimeout(() => reject(new Error('the ingress did not exit within 15 s')), 15_000),
      ),
    ]);
    expect(code).toBe(0);
    socket.destroy();
  }, 60_000);
});
