import fc from 'fast-check';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, type Stack, startStack } from './support/stack.ts';

/**
 * A property fuzzer for every documented HTTP route (the OpenAPI document at /docs/json lists them)
 * and the WebSocket protocol: arbitrary methods' bodies, path parameters, content types and
 * credentials. Properties: never a 5xx (a 503 only as a refusal with retry-after), every error in its
 * door's shape (Anthropic's on /v1/messages, OpenAI's elsewhere), no process restarts, bounded
 * memory. Replay a failure with FUZZ_SEED=<seed> (fast-check prints it).
 */

let stack: Stack;
let metricsUrl: string;
let routes: Array<{ method: string; path: string }>;

const seed = process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : undefined;
const HTTP_RUNS = Number(process.env.FUZZ_HTTP_RUNS ?? 1000);
const WS_RUNS = Number(process.env.FUZZ_WS_RUNS ?? 150);

beforeAll(async () => {
  const port = await freePort();
  stack = await startStack({
    providers: ['openai', 'anthropic'],
    ingressEnv: { METRICS_PORT: String(port) },
    env: { FAREGATE_BOOTSTRAP_CREDIT_USD: '5' },
  });
  metricsUrl = `http://127.0.0.1:${port}/metrics`;
  const doc = (await (await fetch(`${stack.url}/docs/json`)).json()) as {
    paths: Record<string, Record<string, unknown>>;
  };
  routes = Object.entries(doc.paths).flatMap(([path, ops]) =>
    Object.keys(ops)
      .filter((m) => ['get', 'post', 'put', 'patch', 'delete'].includes(m))
      .map((method) => ({ method: method.toUpperCase(), path })),
  );
}, 120_000);

afterAll(async () => {
  await stack?.stop();
});

async function rss(): Promise<number> {
  const text = await (await fetch(metricsUrl)).text();
  const m = /^process_resident_memory_bytes\{[^}]*\} (\d+)/m.exec(text);
  return Number(m?.[1] ?? 0);
}

/** Values a hostile client sends: odd strings, prototype names, huge numbers, nesting. */
const nasty = fc.oneof(
  fc.constantFrom(
    '__proto__',
    'constructor',
    'prototype',
    'toString',
    '..',
    '%2e%2e',
    '%00',
    '%ff',
    '',
    ' ',
    '\u0000',
    '🙂',
    'a'.repeat(5000),
    'openai/gpt-4o-mini',
    'anthropic/claude-haiku-4-5',
    'gpt-4o-mini',
    'auto',
  ),
  fc.string({ maxLength: 40 }),
  fc.integer(),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
);
const value = fc.letrec((tie) => ({
  v: fc.oneof(
    { depthSize: 'small' },
    nasty,
    fc.array(tie('v'), { maxLength: 4 }),
    fc.dictionary(
      fc.oneof(nasty.map(String), fc.constantFrom('model', 'messages', 'role', 'content')),
      tie('v'),
      {
        maxKeys: 5,
      },
    ),
  ),
})).v;

/** A chat-like body with some fields replaced by hostile values: reaches deep validation. */
const chatish = fc
  .record({
    model: fc.oneof(nasty, fc.constantFrom('openai/gpt-4o-mini', 'anthropic/claude-haiku-4-5')),
    messages: fc.oneof(
      fc.constant([{ role: 'user', content: 'hi' }]),
      fc.array(
        fc.record({
          role: fc.oneof(fc.constantFrom('user', 'assistant', 'system', 'tool'), nasty),
          content: value,
        }),
        {
          maxLength: 3,
        },
      ),
      value,
    ),
    max_tokens: fc.oneof(fc.constant(5), nasty),
    stream: fc.oneof(fc.boolean(), nasty),
    extra: value,
  })
  .map((b) => {
    const o: Record<string, unknown> = { ...b };
    if (o.extra === null) delete o.extra;
    return o;
  });

/** A valid chat body with one field replaced: answered, or refused naming that field. */
const oneOff = fc
  .tuple(
    fc.constantFrom('model', 'messages', 'max_tokens', 'stream', 'temperature', 'tools', 'n', 'user'),
    value,
    fc.boolean(),
  )
  .map(([field, v, keep]) => ({
    model: 'openai/gpt-4o-mini',
    messages: [{ role: 'user', content: 'hi' }],
    max_tokens: 5,
    ...(keep ? {} : { [field]: v }),
  }));

const body = fc.oneof(
  { arbitrary: chatish, weight: 2 },
  { arbitrary: oneOff, weight: 2 },
  { arbitrary: value.map((v) => JSON.stringify(v)), weight: 2 },
  { arbitrary: fc.string({ maxLength: 200 }), weight: 1 },
  { arbitrary: fc.constant(undefined), weight: 1 },
);

/** Mostly the right credential for the route (so requests get past auth), sometimes a wrong one. */
const credential = fc.constantFrom(
  'right',
  'right',
  'right',
  'right',
  'key',
  'admin',
  'none',
  'garbage',
  'x-api-key',
);

function headersFor(cred: string, contentType: string | undefined): Record<string, string> {
  const h: Record<string, string> = contentType ? { 'content-type': contentType } : {};
  if (cred === 'key') h.authorization = `Bearer ${stack.apiKey}`;
  else if (cred === 'admin') h.authorization = `Bearer ${stack.adminToken}`;
  else if (cred === 'garbage') h.authorization = 'Bearer fg_live_garbage_0000000000';
  else if (cred === 'x-api-key') h['x-api-key'] = stack.apiKey;
  return h;
}

/** The door's error shape: Anthropic's on /v1/messages, OpenAI's everywhere else. */
function checkErrorShape(path: string, status: number, text: string): void {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new Error(`${status} on ${path} is not JSON: ${text.slice(0, 200)}`);
  }
  const e = parsed as { type?: unknown; error?: { message?: unknown; type?: unknown } };
  if (path.startsWith('/v1/messages')) {
    expect(e.type, `${path} ${status} ${text.slice(0, 200)}`).toBe('error');
  }
  expect(typeof e.error?.message, `${path} ${status} ${text.slice(0, 200)}`).toBe('string');
  expect(typeof e.error?.type, `${path} ${status} ${text.slice(0, 200)}`).toBe('string');
}

/** A WebSocket on /v1/stream with the stack's key, once open. */
async function openStream(): Promise<WebSocket> {
  const ws = new WebSocket(`${stack.url.replace('http', 'ws')}/v1/stream`, {
    headers: { authorization: `Bearer ${stack.apiKey}` },
  });
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  return ws;
}

describe('fuzzer', () => {
  it('found: a NUL character Postgres cannot store is a 400, not a 500 (ids and bodies)', async () => {
    const admin = { authorization: `Bearer ${stack.adminToken}`, 'content-type': 'application/json' };
    for (const [method, path, payload] of [
      ['POST', '/admin/v1/keys/%00/revoke', undefined],
      ['PATCH', '/admin/v1/accounts/a%00b', JSON.stringify({ name: 'x' })],
      ['POST', '/admin/v1/accounts', JSON.stringify({ name: 'nul \u0000 name' })],
    ] as const) {
      const r = await fetch(`${stack.url}${path}`, {
        method,
        headers: admin,
        ...(payload ? { body: payload } : {}),
      });
      const text = await r.text();
      expect(r.status, `${method} ${path} ${text}`).toBeGreaterThanOrEqual(400);
      expect(r.status, `${method} ${path} ${text}`).toBeLessThan(500);
      checkErrorShape(path, r.status, text);
    }
  });

  it('every documented route: no 5xx, errors in the door’s shape, whatever the input', async () => {
    expect(routes.length).toBeGreaterThan(10);
    const before = await rss();
    const seen = new Map<string, number>();
    await fc.assert(
      fc.asyncProperty(
        fc.nat({ max: routes.length - 1 }),
        fc.array(nasty.map(String), { minLength: 3, maxLength: 3 }),
        body,
        credential,
        fc.constantFrom(
          'application/json',
          'application/json',
          'application/json',
          'text/plain',
          'application/x-www-form-urlencoded',
          undefined,
        ),
        async (i, params, b, cred, type) => {
          const route = routes[i] ?? { method: 'GET', path: '/healthz' };
          let n = 0;
          const path = route.path.replace(/\{[^}]+\}/g, () =>
            encodeURIComponent(params[n++ % params.length] ?? 'x'),
          );
          const method = route.method;
          const payload =
            method === 'GET' || method === 'DELETE' || b === undefined
              ? undefined
              : typeof b === 'string'
                ? b
                : JSON.stringify(b);
          const r = await fetch(`${stack.url}${path}`, {
            method,
            headers: headersFor(
              cred === 'right' ? (route.path.startsWith('/admin') ? 'admin' : 'key') : cred,
              payload === undefined ? undefined : type,
            ),
            ...(payload === undefined ? {} : { body: payload }),
            signal: AbortSignal.timeout(30_000),
          });
          const text = await r.text();
          const bucket = `${method} ${route.path} ${r.status}`;
          seen.set(bucket, (seen.get(bucket) ?? 0) + 1);
          const where = `${method} ${path} (${cred}, ${type}) → ${r.status} ${text.slice(0, 300)}`;
          if (r.status === 503) expect(r.headers.get('retry-after'), where).not.toBeNull();
          else expect(r.status, where).toBeLessThan(500);
          if (r.status >= 400) checkErrorShape(route.path, r.status, text);
        },
      ),
      { numRuns: HTTP_RUNS, ...(seed === undefined ? {} : { seed }), endOnFailure: true },
    );
    // The fuzzer got past auth and validation: requests were answered, and refused by validation.
    const count = (re: RegExp) => [...seen].filter(([k]) => re.test(k)).reduce((a, [, n]) => a + n, 0);
    if (process.env.FUZZ_VERBOSE) console.log([...seen].sort((a, b) => b[1] - a[1]));
    expect(count(/ 2\d\d$/)).toBeGreaterThan(0);
    expect(count(/^POST \/v1\/chat\/completions 400$/)).toBeGreaterThan(0);
    // No process restarted or died, and memory did not run away.
    for (const s of stack.services) expect(s.proc.exitCode, `${s.name} exited`).toBeNull();
    expect((await fetch(`${stack.url}/healthz`)).status).toBe(200);
    expect((await rss()) - before).toBeLessThan(256 * 1024 * 1024);
  }, 600_000);

  it('the WebSocket protocol: a refused op is answered as that op, with its id; prototype keys are refused as over HTTP', async () => {
    const ws = await openStream();
    const replies: Array<{
      type: string;
      op?: string;
      id?: string;
      error?: { message: string; param?: string };
    }> = [];
    ws.on('message', (d) => replies.push(JSON.parse(String(d))));
    const chat = { model: 'openai/gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] };
    ws.send(JSON.stringify({ op: 'subscribe', job: { a: 1 }, id: 'objjob' }));
    ws.send(JSON.stringify({ op: 'subscribe', job: 'x', after: -5, id: 'neg' }));
    ws.send(
      '{"op":"submit","id":"proto","request":{"model":"openai/gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"metadata":{"__proto__":"x"}}}',
    );
    ws.send(
      JSON.stringify({ op: 'submit', id: 'inf', request: chat }).replace(
        '"messages"',
        '"max_tokens":1e400,"messages"',
      ),
    );
    ws.send(JSON.stringify({ op: 'no-such-op', id: 'odd' }));
    const deadline = Date.now() + 10_000;
    while (replies.length < 5) {
      if (Date.now() > deadline) throw new Error(`replies: ${JSON.stringify(replies)}`);
      await new Promise((r) => setTimeout(r, 5));
    }
    ws.close();
    const byId = (id: string) => replies.find((r) => r.id === id);
    expect(byId('objjob')).toMatchObject({ type: 'nack', op: 'subscribe' });
    expect(byId('neg')).toMatchObject({ type: 'nack', op: 'subscribe' });
    expect(byId('proto')).toMatchObject({ type: 'nack', op: 'submit' });
    expect(byId('proto')?.error?.message).toMatch(/property named '__proto__'/);
    expect(byId('inf')).toMatchObject({ type: 'nack', op: 'submit' });
    expect(byId('odd')).toMatchObject({ type: 'nack', op: 'unknown' });
  });

  it('the WebSocket protocol: arbitrary frames get a nack or an answer, never a crash', async () => {
    const ws = await openStream();
    const replies: unknown[] = [];
    let closed: number | undefined;
    ws.on('message', (d) => replies.push(JSON.parse(String(d))));
    ws.on('close', (code) => {
      closed = code;
    });
    const op = fc.record({
      v: fc.oneof(fc.constant(1), nasty),
      op: fc.oneof(fc.constantFrom('subscribe', 'unsubscribe', 'submit', 'cancel', 'ping'), nasty),
      id: fc.oneof(nasty, fc.constant(undefined)),
      job: fc.oneof(nasty, fc.constant(undefined)),
      batch: fc.oneof(nasty, fc.constant(undefined)),
      after: value,
      request: fc.oneof(chatish, value),
    });
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          op.map((o) => JSON.stringify(o)),
          fc.string({ maxLength: 100 }),
          value.map((v) => JSON.stringify(v)),
        ),
        async (frame) => {
          const before = replies.length;
          ws.send(frame);
          ws.send(JSON.stringify({ v: 1, op: 'ping', id: 'marker' }));
          // The ping's pong comes after whatever the frame caused (one socket, in order).
          const deadline = Date.now() + 10_000;
          while (!replies.slice(before).some((r) => (r as { id?: string; type?: string }).id === 'marker')) {
            expect(closed, `socket closed after ${frame.slice(0, 200)}`).toBeUndefined();
            if (Date.now() > deadline) throw new Error(`no pong after ${frame.slice(0, 200)}`);
            await new Promise((r) => setTimeout(r, 5));
          }
          for (const r of replies.slice(before)) {
            const reply = r as { type?: unknown; error?: { message?: unknown; type?: unknown } };
            expect(typeof reply.type, JSON.stringify(r)).toBe('string');
            if (reply.type === 'nack') {
              expect(typeof reply.error?.message).toBe('string');
              expect(typeof reply.error?.type).toBe('string');
            }
          }
        },
      ),
      { numRuns: WS_RUNS, ...(seed === undefined ? {} : { seed }), endOnFailure: true },
    );
    ws.close();
    for (const s of stack.services) expect(s.proc.exitCode, `${s.name} exited`).toBeNull();
  }, 300_000);
});
