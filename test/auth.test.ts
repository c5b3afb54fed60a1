import { request } from 'node:http';
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { until } from '@faregate/testing/env';
import { RawWs } from './support/raw-ws.ts';
import { freePort, type Stack, startStack } from './support/stack.ts';

/**
 * Auth as an attacker tries it from outside: disguised admin paths, revoked keys on every path (HTTP,
 * an open WebSocket, a stream token minted before), unauthenticated billing reads, and requests that
 * fail before any handler runs. Real services, real HTTP.
 */
let stack: Stack;

beforeAll(async () => {
  stack = await startStack({ providers: ['openai'] });
}, 90_000);

afterAll(async () => {
  await stack?.stop();
});

interface Raw {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** One request with the path exactly as given (fetch would normalize it). */
function raw(
  method: string,
  path: string,
  headers: Record<string, string> = {},
  body?: string,
): Promise<Raw> {
  const u = new URL(stack.url);
  return new Promise((resolve, reject) => {
    const req = request(
      { host: u.hostname, port: u.port, method, path, headers: { ...headers, connection: 'close' } },
      (res) => {
        let b = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          b += c;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: b }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

const json = { 'content-type': 'application/json' };
/** Generation calls the fake served (the pools' model listings are not counted). */
const chatCalls = () => stack.fake.calls().filter((c) => c.model !== null).length;
const errorOf = (r: Raw) =>
  (JSON.parse(r.body) as { error: { message: string; type: string; code: string } }).error;

async function admin(method: string, path: string, body?: unknown) {
  const r = await fetch(`${stack.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${stack.adminToken}`, ...(body === undefined ? {} : json) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: r.status, body: (await r.json()) as Record<string, unknown> };
}

async function chat(key: string) {
  return fetch(`${stack.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, ...json },
    body: JSON.stringify({ model: 'openai/gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }),
  });
}

/** A fresh account with credit and a key of its own. */
async function tenant(): Promise<{ account: string; keyId: string; key: string }> {
  const acc = await admin('POST', '/admin/v1/accounts', { name: 'revocation' });
  const account = acc.body.id as string;
  await admin('POST', '/admin/v1/credits', { account_id: account, amount_usd: '5' });
  const k = await admin('POST', '/admin/v1/keys', { account_id: account, name: 'k' });
  return { account, keyId: k.body.id as string, key: k.body.key as string };
}

describe('the admin API behind disguised paths', () => {
  const routes: Array<[string, string, unknown?]> = [
    ['GET', '/admin/v1/balances'],
    ['POST', '/admin/v1/accounts', { name: 'mallory' }],
    ['POST', '/admin/v1/keys', { account_id: 'acct_x', name: 'mallory' }],
    ['POST', '/admin/v1/keys/key_x/revoke'],
    ['POST', '/admin/v1/credits', { account_id: 'acct_x', amount_usd: '1000' }],
    ['GET', '/admin/v1/providers'],
    ['PUT', '/admin/v1/providers/openai/limits', { rpm: 1 }],
    ['GET', '/admin/v1/pools'],
    ['GET', '/admin/v1/spend'],
    ['GET', '/admin/v1/keys'],
    ['GET', '/admin/v1/batches'],
  ];
  /** Spellings a router may take for the same route: each reaches it (401) or nothing (404), never 2xx. */
  const disguises: Array<[string, (p: string) => string, 'reaches' | 'may miss']> = [
    ['as is', (p) => p, 'reaches'],
    ['percent-encoded letter', (p) => p.replace('/admin/', '/%61dmin/'), 'reaches'],
    ['every letter encoded', (p) => p.replace('/admin/', '/%61%64%6d%69%6e/'), 'reaches'],
    ['encoded segment', (p) => p.replace('/v1/', '/%76%31/'), 'reaches'],
    ['double slashes', (p) => p.replace('/admin/', '//admin//'), 'reaches'],
    ['dotted', (p) => p.replace('/admin/', '/admin/./'), 'may miss'],
    ['dot-dot', (p) => p.replace('/admin/', '/v1/../admin/'), 'may miss'],
    ['mixed case', (p) => p.replace('/admin/', '/Admin/'), 'may miss'],
    ['upper case', (p) => p.toUpperCase(), 'may miss'],
    ['trailing slash', (p) => `${p}/`, 'may miss'],
    ['query', (p) => `${p}?x=/admin/`, 'reaches'],
  ];

  it('answers 401 (or 404 where the router matches nothing) to every route, however the path is spelled', async () => {
    const before = await admin('GET', '/admin/v1/balances');
    for (const [method, path, body] of routes) {
      for (const [name, disguise, expectation] of disguises) {
        const p = disguise(path);
        const variants: Array<Record<string, string>> = [
          {},
          { authorization: `Bearer ${stack.apiKey}` },
          { authorization: 'Bearer ' },
        ];
        for (const headers of variants) {
          const r =
            body === undefined
              ? await raw(method, p, headers)
              : await raw(method, p, { ...json, ...headers }, JSON.stringify(body));
          const allowed = expectation === 'reaches' ? [401] : [401, 404];
          expect(allowed, `${method} ${p} (${name}) answered ${r.status}: ${r.body}`).toContain(r.status);
          expect(errorOf(r).message).toBeTypeOf('string');
        }
      }
    }
    // Nothing was minted, created or changed.
    expect(await admin('GET', '/admin/v1/balances')).toEqual(before);
  });
});

describe('key scopes: each API needs its own, on every route and WebSocket op', () => {
  /** A key of a fresh tenant holding only `scopes`. */
  async function scopedKey(scopes: string[]): Promise<string> {
    const t = await tenant();
    const k = await admin('POST', '/admin/v1/keys', { account_id: t.account, name: 'scoped', scopes });
    expect(k.status).toBe(201);
    return k.body.key as string;
  }
  const call = async (key: string, method: string, path: string, body?: unknown) => {
    const r = await fetch(`${stack.url}${path}`, {
      method,
      headers: { authorization: `Bearer ${key}`, ...(body === undefined ? {} : json) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: r.status, code: ((await r.json()) as { error?: { code?: string } }).error?.code };
  };
  const denied = { status: 403, code: 'permission_denied' };
  const ask = { model: 'openai/gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] };

  it('a usage-only key reads usage, and nothing else: no files, batches, jobs or inference', async () => {
    const key = await scopedKey(['usage']);
    expect((await call(key, 'GET', '/v1/balance')).status).toBe(200);
    const form = new FormData();
    form.set('purpose', 'batch');
    form.set(
      'file',
      new Blob([
        `${JSON.stringify({ custom_id: 'a', method: 'POST', url: '/v1/chat/completions', body: ask })}\n`,
      ]),
      'in.jsonl',
    );
    const upload = await fetch(`${stack.url}/v1/files`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}` },
      body: form,
    });
    expect(upload.status).toBe(403);
    for (const [method, path, body] of [
      ['GET', '/v1/files'],
      ['GET', '/v1/files/file-abc/content'],
      ['DELETE', '/v1/files/file-abc'],
      ['GET', '/v1/batches'],
      [
        'POST',
        '/v1/batches',
        { input_file_id: 'file-abc', endpoint: '/v1/chat/completions', completion_window: '24h' },
      ],
      ['POST', '/v1/batches/batch_abc/cancel'],
      ['GET', '/v1/jobs/req_abcdefghijkl'],
      ['POST', '/v1/jobs/req_abcdefghijkl/cancel'],
      ['GET', '/v1/jobs/batches/jbat_abcdefghijkl'],
      ['POST', '/v1/jobs', ask],
      ['POST', '/v1/chat/completions', ask],
    ] as const) {
      expect({ path, ...(await call(key, method, path, body)) }).toEqual({ path, ...denied });
    }
    const ws = await RawWs.open(stack.url, key);
    ws.send({ op: 'subscribe', job: 'req_abcdefghijkl', id: 'j' });
    ws.send({ op: 'cancel', batch: 'batch_abc', id: 'b' });
    for (const id of ['j', 'b'])
      expect(await ws.next((m) => m.id === id)).toMatchObject({
        type: 'nack',
        error: { code: 'permission_denied' },
      });
    ws.ws.close();
  });

  it('a chat-only key runs requests and its jobs, but cannot read or write files and batches', async () => {
    const key = await scopedKey(['chat']);
    expect((await call(key, 'POST', '/v1/chat/completions', ask)).status).toBe(200);
    expect((await call(key, 'POST', '/v1/jobs', ask)).status).toBe(202);
    for (const [method, path, body] of [
      ['GET', '/v1/files'],
      ['GET', '/v1/batches'],
      ['POST', '/v1/jobs', { requests: [ask] }],
      ['GET', '/v1/jobs/batches/jbat_abcdefghijkl'],
    ] as const) {
      expect({ path, ...(await call(key, method, path, body)) }).toEqual({ path, ...denied });
    }
    const ws = await RawWs.open(stack.url, key);
    ws.send({ op: 'subscribe', batch: 'batch_abc', id: 'b' });
    expect(await ws.next((m) => m.id === 'b')).toMatchObject({
      type: 'nack',
      error: { code: 'permission_denied' },
    });
    ws.ws.close();
  });
});

describe('a revoked key stops working everywhere at once', () => {
  it('over HTTP: the first request after the revocation is refused, and nothing is billed for it', async () => {
    const t = await tenant();
    expect((await chat(t.key)).status).toBe(200);
    const calls = chatCalls();
    expect((await admin('POST', `/admin/v1/keys/${t.keyId}/revoke`)).status).toBe(200);
    const r = await chat(t.key);
    expect(r.status).toBe(401);
    expect(((await r.json()) as { error: { code: string } }).error.code).toBe('invalid_api_key');
    expect(chatCalls()).toBe(calls);
  });

  it('on a WebSocket opened before: the socket is closed with 4001 and submits nothing more', async () => {
    const t = await tenant();
    const ws = await RawWs.open(stack.url, t.key);
    ws.send({ op: 'ping', id: 'p1' });
    await ws.next((m) => m.type === 'pong');
    const calls = chatCalls();
    expect((await admin('POST', `/admin/v1/keys/${t.keyId}/revoke`)).status).toBe(200);
    // Submitted right after the revocation: either refused or never reaches the socket.
    if (ws.closeCode === undefined) {
      ws.send({
        op: 'submit',
        id: 's1',
        request: { model: 'openai/gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] },
      });
    }
    expect(await ws.closed).toBe(4001);
    expect(ws.messages.some((m) => m.type === 'ack')).toBe(false);
    expect(chatCalls()).toBe(calls);
  });

  it('with a stream token minted before: the upgrade is refused', async () => {
    const t = await tenant();
    const minted = await fetch(`${stack.url}/v1/stream/tokens`, {
      method: 'POST',
      headers: { authorization: `Bearer ${t.key}` },
    });
    expect(minted.status).toBe(201);
    const { token } = (await minted.json()) as { token: string };
    expect((await admin('POST', `/admin/v1/keys/${t.keyId}/revoke`)).status).toBe(200);
    const ws = new WebSocket(`${stack.url.replace(/^http/, 'ws')}/v1/stream?token=${token}`);
    const status = await new Promise<number>((resolve, reject) => {
      ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      ws.on('open', () => reject(new Error('a token of a revoked key opened a socket')));
      ws.on('error', () => {});
    });
    expect(status).toBe(401);
  });

  it('on a request running when it is revoked: a stream ends with an error chunk, a whole answer is 401, generation stops', async () => {
    const outcome = (id: string) =>
      until(
        async () =>
          (await stack.sql.query('SELECT outcome FROM usage_events WHERE request_id = $1 AND final', [id]))
            .rows[0]?.outcome as string | undefined,
        { what: 'the request settled' },
      );
    const post = (key: string, stream: boolean) =>
      fetch(`${stack.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, ...json },
        body: JSON.stringify({
          model: 'openai/gpt-4o-mini',
          messages: [{ role: 'user', content: 'a long story' }],
          stream,
        }),
      });
    try {
      // Streamed: content arrives, then the key is revoked.
      stack.fake.configure({ provider: 'openai', chunkMs: 50, tokens: 400 });
      const t = await tenant();
      const res = await post(t.key, true);
      expect(res.status).toBe(200);
      const id = res.headers.get('x-request-id') ?? '';
      const reader = res.body!.getReader();
      const decoder = new TextDecoder();
      let sse = '';
      while (!sse.includes('"content"')) sse += decoder.decode((await reader.read()).value);
      expect((await admin('POST', `/admin/v1/keys/${t.keyId}/revoke`)).status).toBe(200);
      for (let r = await reader.read(); !r.done; r = await reader.read()) sse += decoder.decode(r.value);
      expect(sse).toContain('"code":"invalid_api_key"');
      expect(await outcome(id)).toBe('cancelled');

      // Whole: the provider has not answered yet when the key is revoked.
      stack.fake.configure({ provider: 'openai', chunkMs: 0, tokens: 12, firstByteMs: 20_000 });
      const u = await tenant();
      const calls = chatCalls();
      const pending = post(u.key, false);
      await until(async () => (chatCalls() > calls ? true : undefined), { what: 'the call started' });
      expect((await admin('POST', `/admin/v1/keys/${u.keyId}/revoke`)).status).toBe(200);
      const whole = await pending;
      expect(whole.status).toBe(401);
      expect(((await whole.json()) as { error: { code: string } }).error.code).toBe('invalid_api_key');
      expect(await outcome(whole.headers.get('x-request-id') ?? '')).toBe('cancelled');
    } finally {
      stack.fake.reset();
    }
  });

  it('on a retry waiting with the same Idempotency-Key: it hears the revocation too, not "cancelled by the caller"', async () => {
    try {
      stack.fake.configure({ provider: 'openai', chunkMs: 50, tokens: 400 });
      const t = await tenant();
      const post = () =>
        fetch(`${stack.url}/v1/chat/completions`, {
          method: 'POST',
          headers: { authorization: `Bearer ${t.key}`, 'idempotency-key': 'revoke-while-waiting', ...json },
          body: JSON.stringify({
            model: 'openai/gpt-4o-mini',
            messages: [{ role: 'user', content: 'a long story' }],
            stream: true,
          }),
        });
      const readUntil = async (res: Response, text: string) => {
        const reader = res.body!.getReader();
        const decoder = new TextDecoder();
        let sse = '';
        while (!sse.includes(text)) sse += decoder.decode((await reader.read()).value);
        return { reader, sse };
      };
      const first = await post();
      const firstRead = await readUntil(first, '"content"');
      // The retry is attached to the running job once the job's content reaches it.
      const retry = await post();
      expect(retry.status).toBe(200);
      const attached = await readUntil(retry, '"content"');
      expect((await admin('POST', `/admin/v1/keys/${t.keyId}/revoke`)).status).toBe(200);
      let sse = attached.sse;
      for (let r = await attached.reader.read(); !r.done; r = await attached.reader.read())
        sse += new TextDecoder().decode(r.value);
      expect(sse).toContain('"code":"invalid_api_key"');
      expect(sse).not.toContain('"code":"cancelled"');
      await firstRead.reader.cancel();
    } finally {
      stack.fake.reset();
    }
  });

  it('in another ingress process too, through the broadcast', async () => {
    const t = await tenant();
    // A free port (the next one up may be another test file's stack).
    const port = await freePort();
    const other = await stack.start('ingress', { PORT: String(port) });
    const otherUrl = `http://127.0.0.1:${port}`;
    await until(async () => (await fetch(`${otherUrl}/readyz`).catch(() => undefined))?.ok, {
      timeoutMs: 30_000,
      what: 'second ingress ready',
    });
    const ask = () =>
      fetch(`${otherUrl}/v1/models`, { headers: { authorization: `Bearer ${t.key}` } }).then((r) => r.status);
    expect(await ask()).toBe(200); // now cached in the other process
    const ws = await RawWs.open(otherUrl, t.key);
    expect((await admin('POST', `/admin/v1/keys/${t.keyId}/revoke`)).status).toBe(200);
    const revokedAt = Date.now();
    expect(await ws.closed).toBe(4001);
    await until(async () => (await ask()) === 401, {
      timeoutMs: 1_000,
      what: 'the other ingress refusing the key',
    });
    expect(Date.now() - revokedAt).toBeLessThan(1_000);
    other.proc.kill('SIGTERM');
  });
});

describe('billing reads without a valid key', () => {
  for (const path of ['/v1/usage', '/v1/balance']) {
    for (const [name, headers] of [
      ['no key', {}],
      ['a wrong key', { authorization: 'Bearer fg_live_wrong000000000000000000000' }],
      ['the admin token', { authorization: `Bearer admin` }],
    ] as Array<[string, Record<string, string>]>) {
      it(`${path} with ${name} answers 401 in OpenAI's shape`, async () => {
        const r = await raw('GET', path, headers);
        expect(r.status).toBe(401);
        expect(errorOf(r).code).toBe('invalid_api_key');
      });
    }
  }
});

describe('errors answered before any handler runs keep the error shape', () => {
  it('431 for a 20 KB Authorization header', async () => {
    const r = await raw('GET', '/v1/models', { authorization: `Bearer ${'a'.repeat(20_000)}` });
    expect(r.status).toBe(431);
    expect(r.headers['content-type']).toMatch(/application\/json/);
    expect(errorOf(r).type).toBe('invalid_request_error');
  });

  it("431 on Anthropic's door is in Anthropic's shape", async () => {
    for (const path of ['/v1/messages', '/v1//messages?beta=true', '/v1/messages/count_tokens']) {
      const r = await raw('POST', path, {
        'anthropic-version': '2023-06-01',
        'x-api-key': 'a'.repeat(20_000),
      });
      expect(r.status).toBe(431);
      const id = r.headers['request-id'];
      expect(id).toMatch(/^req_/);
      expect(r.headers['x-request-id']).toBe(id);
      expect(JSON.parse(r.body)).toEqual({
        type: 'error',
        error: { type: 'invalid_request_error', message: 'The request headers are too large.' },
        request_id: id,
      });
    }
    // Not Anthropic's door: OpenAI's shape.
    const r = await raw('POST', '/v1/messagesx', { authorization: `Bearer ${'a'.repeat(20_000)}` });
    expect(r.status).toBe(431);
    expect(errorOf(r).type).toBe('invalid_request_error');
    // A URL past the header limit is a 414, in the door's shape; so is a body cut short.
    const long = await raw('POST', `/v1/messages/${'a'.repeat(20_000)}`, {
      'anthropic-version': '2023-06-01',
    });
    expect(long.status).toBe(414);
    expect(JSON.parse(long.body)).toMatchObject({ type: 'error', error: { type: 'invalid_request_error' } });
    const longOpenAI = await raw('GET', `/v1/models?x=${'a'.repeat(20_000)}`);
    expect(longOpenAI.status).toBe(414);
    expect(errorOf(longOpenAI).message).toBe('The request URL is too long.');
    const short = await new Promise<string>((resolve, reject) => {
      const u = new URL(stack.url);
      const c = connect(Number(u.port), u.hostname, () => {
        c.end(
          `POST /v1/messages HTTP/1.1\r\nHost: x\r\nx-api-key: ${stack.apiKey}\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{"a":1`,
        );
      });
      let got = '';
      c.on('data', (d) => {
        got += d.toString();
      });
      c.on('close', () => resolve(got));
      c.on('error', reject);
    });
    expect(short).toMatch(/^HTTP\/1\.1 400 /);
    expect(JSON.parse(short.slice(short.indexOf('\r\n\r\n') + 4))).toMatchObject({ type: 'error' });
    // Refused by the router before any route: the door's shape too.
    const bad = await raw('POST', '/v1/messages/%ff', { 'anthropic-version': '2023-06-01' });
    expect(bad.status).toBe(400);
    expect(JSON.parse(bad.body)).toMatchObject({ type: 'error', error: { type: 'invalid_request_error' } });
  });

  it("a path meant for Anthropic's door, however spelled, or a request from Anthropic's SDK, is answered in Anthropic's shape with its id", async () => {
    const anthropicHeaders = { 'anthropic-version': '2023-06-01', 'x-api-key': stack.apiKey };
    for (const [method, path, headers] of [
      ['POST', '/v1/./messages', { 'x-api-key': stack.apiKey }],
      ['POST', '/V1/messages', { 'x-api-key': stack.apiKey }],
      ['POST', '/v1/messages%2F', { 'x-api-key': stack.apiKey }],
      ['POST', '/v1/messages;x', { 'x-api-key': stack.apiKey }],
      ['POST', '/v1/../v1/messages', { 'x-api-key': stack.apiKey }],
      ['POST', '/v1/messages/', anthropicHeaders],
      // Anthropic's SDK calling what no route takes: its header says whose shape.
      ['POST', '/v1/models', anthropicHeaders],
      ['GET', `/v1/models?x=${'a'.repeat(9_000)}`, anthropicHeaders],
    ] as const) {
      const r = await raw(method, path, headers);
      expect(r.status, `${method} ${path}`).toBeGreaterThanOrEqual(400);
      const id = r.headers['request-id'];
      expect(id, `${method} ${path}`).toMatch(/^req_/);
      const body = JSON.parse(r.body) as { type?: string; request_id?: string };
      expect(body, `${method} ${path}`).toMatchObject({ type: 'error', request_id: id });
    }
    // An unsupported Content-Encoding on the door: the same.
    const enc = await raw(
      'POST',
      '/v1/messages',
      { ...anthropicHeaders, 'content-encoding': 'compress', 'content-type': 'application/json' },
      '{}',
    );
    expect(enc.status).toBe(415);
    expect(JSON.parse(enc.body)).toMatchObject({ type: 'error', request_id: enc.headers['request-id'] });
    // OpenAI's SDK on the same unknown paths: OpenAI's shape, as before.
    for (const path of ['/v1/nothing', '/v1/messagesx']) {
      const r = await raw('POST', path, { authorization: `Bearer ${stack.apiKey}` });
      expect(r.status).toBe(404);
      expect(errorOf(r).code).toBe('not_found');
    }
  });

  it('two Idempotency-Key headers are refused as two, not as a malformed key', async () => {
    const body = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });
    const answer = await new Promise<string>((resolve, reject) => {
      const u = new URL(stack.url);
      const c = connect(Number(u.port), u.hostname, () => {
        c.write(
          `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${stack.apiKey}\r\n` +
            'Content-Type: application/json\r\nIdempotency-Key: a1\r\nIdempotency-Key: a2\r\n' +
            `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
        );
      });
      let got = '';
      c.on('data', (d) => {
        got += d.toString();
      });
      c.on('close', () => resolve(got));
      c.on('error', reject);
    });
    expect(answer).toMatch(/^HTTP\/1\.1 400 /);
    const error = (
      JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)) as { error: Record<string, unknown> }
    ).error;
    expect(error).toMatchObject({ param: 'Idempotency-Key' });
    expect(error.message).toMatch(/more than one Idempotency-Key header/);
  });

  it('400 for a path that is not valid percent-encoding', async () => {
    const r = await raw('GET', '/v1/jobs/%ff', { authorization: `Bearer ${stack.apiKey}` });
    expect(r.status).toBe(400);
    expect(errorOf(r).message).toMatch(/malformed/);
  });

  it("400 for an HTTP/1.1 request without a Host header, in the door's shape; HTTP/1.0 needs none", async () => {
    const send = (head: string) =>
      new Promise<string>((resolve, reject) => {
        const u = new URL(stack.url);
        const c = connect(Number(u.port), u.hostname, () => c.write(head));
        let got = '';
        c.on('data', (d) => {
          got += d.toString();
        });
        c.on('close', () => resolve(got));
        c.on('error', reject);
      });
    const bodyOf = (r: string) => JSON.parse(r.slice(r.indexOf('\r\n\r\n') + 4)) as Record<string, unknown>;
    const openai = await send(`GET /v1/models HTTP/1.1\r\nauthorization: Bearer ${stack.apiKey}\r\n\r\n`);
    expect(openai).toMatch(/^HTTP\/1\.1 400 /);
    expect(openai).toMatch(/\r\nconnection: close\r\n/i);
    expect(bodyOf(openai)).toMatchObject({
      error: {
        type: 'invalid_request_error',
        message: 'The request has no Host header, which HTTP/1.1 requires.',
      },
    });
    const anthropic = await send(
      `POST /v1/messages HTTP/1.1\r\nx-api-key: ${stack.apiKey}\r\nanthropic-version: 2023-06-01\r\ncontent-length: 0\r\n\r\n`,
    );
    expect(anthropic).toMatch(/^HTTP\/1\.1 400 /);
    expect(bodyOf(anthropic)).toMatchObject({ type: 'error', error: { type: 'invalid_request_error' } });
    // HTTP/1.0 has no Host requirement: answered as usual.
    const old = await send(`GET /v1/models HTTP/1.0\r\nauthorization: Bearer ${stack.apiKey}\r\n\r\n`);
    expect(old).toMatch(/^HTTP\/1\.[01] 200 /);
    expect(bodyOf(old)).toMatchObject({ object: 'list' });
  });

  it('414 for a request line past 8 KiB whose head is within the 16 KiB header limit', async () => {
    for (const n of [9_000, 15_000]) {
      const r = await raw('GET', `/v1/balance?x=${'a'.repeat(n)}`, {
        authorization: `Bearer ${stack.apiKey}`,
      });
      expect(r.status, String(n)).toBe(414);
      expect(errorOf(r).message).toBe('The request URL is too long.');
    }
    const r = await raw('GET', `/v1/balance?x=${'a'.repeat(8_000)}`, {
      authorization: `Bearer ${stack.apiKey}`,
    });
    expect(r.status).toBe(200);
  });

  it('414 for a 5,000-character id', async () => {
    const r = await raw('GET', `/v1/jobs/${'j'.repeat(5_000)}`, { authorization: `Bearer ${stack.apiKey}` });
    expect(r.status).toBe(414);
    expect(errorOf(r).type).toBe('invalid_request_error');
  });

  it('414 for a model id over 100 characters, as for every other path parameter; ids with a slash still resolve', async () => {
    const auth = { authorization: `Bearer ${stack.apiKey}` };
    const long = await raw('GET', `/v1/models/${'m'.repeat(200)}`, auth);
    expect(long.status).toBe(414);
    expect(errorOf(long)).toMatchObject({
      type: 'invalid_request_error',
      message: 'The request URL is too long.',
    });
    expect(long.body).not.toContain('mmmm');
    // Anthropic's SDKs (anthropic-version) get Anthropic's shape, as on the other routes.
    const versioned = await raw('GET', `/v1/models/openai/${'m'.repeat(100)}`, {
      ...auth,
      'anthropic-version': '2023-06-01',
    });
    expect(versioned.status).toBe(414);
    expect(JSON.parse(versioned.body)).toMatchObject({
      type: 'error',
      error: { type: 'invalid_request_error' },
    });
    // 100 characters are a name like any other: unknown, 404.
    expect((await raw('GET', `/v1/models/${'m'.repeat(100)}`, auth)).status).toBe(404);
    const slashed = await raw('GET', '/v1/models/openai/gpt-4o-mini', auth);
    expect(slashed.status).toBe(200);
    expect(JSON.parse(slashed.body)).toMatchObject({ id: 'openai/gpt-4o-mini', object: 'model' });
  });
});
