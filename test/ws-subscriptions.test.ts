import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect as connectTcp } from 'node:net';
import WebSocket from 'ws';
import { jobApi } from './support/jobs.ts';
import { isTerminal, type Message, RawWs } from './support/raw-ws.ts';
import { type Stack, startStack } from './support/stack.ts';

/**
 * The WebSocket protocol's per-socket rules against the real services (outside probe): messages
 * take effect in the order sent, the subscription cap counts every follower (job batch members and
 * batch progress included), a job batch's cursors and `batch_end`, and upgrades refused without
 * using up a stream token, in OpenAI's error shape.
 */
const ALLOWED = 'https://app.example';
let stack: Stack;
let api: ReturnType<typeof jobApi>;

beforeAll(async () => {
  stack = await startStack({
    providers: ['openai'],
    env: { STREAM_TTL_SECONDS: '900', WS_ALLOWED_ORIGINS: ALLOWED, BATCH_TICK_MS: '50' },
  });
  api = jobApi(stack.url);
}, 90_000);

afterAll(async () => {
  await stack?.stop();
});

const open = () => RawWs.open(stack.url, stack.apiKey);
/** A streamed answer of `tokens` chunks, `chunkMs` apart. */
const slow = (what: string, tokens = 40, chunkMs = 50) =>
  `[[fake:{"fault":"slow_stream","chunkMs":${chunkMs},"tokens":${tokens},"afterChunks":0}]] ${what}`;
const ask = (content: string) => ({ model: 'gpt-4o-mini', messages: [{ role: 'user', content }] });

async function jobBatch(contents: string[]): Promise<{ id: string; jobs: string[] }> {
  const r = await api.call(stack.apiKey, 'POST', '/v1/jobs', { requests: contents.map(ask) });
  expect(r.status).toBe(202);
  const b = r.body as unknown as { id: string; jobs: Array<{ id: string }> };
  return { id: b.id, jobs: b.jobs.map((j) => j.id) };
}
/** A socket following `job`: `upTo(n)` resolves once frame n was written (frames are stored first). */
async function watch(job: string) {
  const w = await open();
  w.send({ op: 'subscribe', job });
  const seen = () => Math.max(0, ...w.frames(job).map((f) => f.seq ?? 0));
  const upTo = (n: number) => w.next((m) => m.job === job && (m.seq ?? 0) >= n, `frame ${n} of ${job}`);
  return { seen, upTo, close: () => w.close() };
}
/** A round trip on the socket: whatever the server sent before its answer has arrived. */
async function roundTrip(c: RawWs, id: string): Promise<void> {
  c.send({ op: 'ping', id });
  await c.next((m) => m.type === 'pong' && m.id === id);
}

describe('one socket’s messages take effect in the order sent', () => {
  it('subscribe then unsubscribe sent together: acked in order, and no frame after the unsubscribe', async () => {
    const job = await api.submit(stack.apiKey, slow('followed, then not', 400, 40));
    const w = await watch(job);
    await w.upTo(4);
    for (let trial = 0; trial < 5; trial++) {
      const c = await open();
      c.send({ op: 'subscribe', job, after: 0, id: 's' });
      c.send({ op: 'unsubscribe', job, id: 'u' });
      await c.next((m) => m.id === 'u');
      // More frames are written meanwhile: none of them may come.
      await w.upTo(w.seen() + 3);
      await roundTrip(c, 'p');
      const replies = c.messages.filter((m) => m.type === 'ack' || m.type === 'nack');
      expect(
        replies.map((m) => `${m.type}:${m.op}`),
        `trial ${trial}`,
      ).toEqual(['ack:subscribe', 'ack:unsubscribe']);
      const after = c.messages.slice(c.messages.findIndex((m) => m.id === 'u') + 1);
      expect(
        after.filter((m) => m.job === job && typeof m.seq === 'number'),
        `trial ${trial}`,
      ).toEqual([]);
      await c.close();
    }
    await w.close();
    await api.call(stack.apiKey, 'POST', `/v1/jobs/${job}/cancel`);
  });

  it('answers a malformed message in its turn, after the op sent before it', async () => {
    const job = await api.submit(stack.apiKey, 'a short one');
    const c = await open();
    c.send({ op: 'subscribe', job, id: 'first' });
    c.ws.send('not json');
    c.send({ op: 'ping', id: 'last' });
    await c.next((m) => m.id === 'last');
    const replies = c.messages.filter((m) => m.type !== undefined && typeof m.seq !== 'number');
    expect(replies.slice(0, 3).map((m) => `${m.type}:${m.op ?? ''}:${m.id ?? ''}`)).toEqual([
      'ack:subscribe:first',
      'nack:unknown:',
      'pong::last',
    ]);
    await c.close();
  });
});

describe('job batch subscriptions', () => {
  it('refuse a cursor past a running member’s last frame, naming after and the member', async () => {
    const b = await jobBatch([slow('runs a while', 200, 50), 'short']);
    const [m0] = b.jobs as [string];
    const w = await watch(m0);
    await w.upTo(3);
    await w.close();
    const c = await open();
    c.send({ op: 'subscribe', batch: b.id, after: { [m0]: 9999 }, id: 'b' });
    const nack = await c.next((m) => m.id === 'b');
    expect(nack).toMatchObject({ type: 'nack', batch: b.id, error: { param: 'after' } });
    expect(String((nack.error as { message: string }).message)).toContain(m0);
    await c.close();
    await api.call(stack.apiKey, 'POST', `/v1/jobs/${m0}/cancel`);
  });

  it('subscribe, unsubscribe and cancel naming neither a job nor a batch, or both, are refused alike', async () => {
    const c = await open();
    const ops = ['subscribe', 'unsubscribe', 'cancel'] as const;
    for (const op of ops) c.send({ op, id: `${op}-none` });
    for (const op of ops)
      c.send({ op, job: 'req_0123456789abcdef', batch: 'jbat_0123456789abcdef', id: `${op}-both` });
    for (const op of ops)
      for (const which of ['none', 'both'])
        expect(await c.next((m) => m.id === `${op}-${which}`), `${op} ${which}`).toMatchObject({
          type: 'nack',
          op,
          error: { code: 'invalid_request_error', message: "Give either 'job' or 'batch'.", param: 'job' },
        });
    await c.close();
  });

  it('name an unknown job batch by `batch`, as an unknown batch_', async () => {
    const c = await open();
    c.send({ op: 'subscribe', batch: 'jbat_0123456789abcdef', id: 'j' });
    c.send({ op: 'subscribe', batch: 'batch_0123456789abcdef', id: 'b' });
    c.send({ op: 'cancel', batch: 'jbat_0123456789abcdef', id: 'c' });
    for (const id of ['j', 'b', 'c'])
      expect(await c.next((m) => m.id === id), id).toMatchObject({
        type: 'nack',
        error: { code: 'not_found', param: 'batch' },
      });
    await c.close();
  });

  it('end with batch_end only after every member’s terminal frame, whatever unsubscribes and re-subscribes', async () => {
    // Member 0 ends last: re-subscribed directly, its terminal frame must come before batch_end.
    const b = await jobBatch([slow('the slow member', 60, 40), slow('the quick member', 5, 20)]);
    const [m0, m1] = b.jobs as [string, string];
    const c = await open();
    c.send({ op: 'subscribe', batch: b.id, id: 'b' });
    c.send({ op: 'unsubscribe', job: m0, id: 'u0' });
    c.send({ op: 'subscribe', job: m0, after: 0, id: 's0' });
    await c.next((m) => m.type === 'batch_end' && m.batch === b.id, 'batch_end');
    const at = (pred: (m: Message) => boolean) => c.messages.findIndex(pred);
    const end = at((m) => m.type === 'batch_end');
    expect(at((m) => m.job === m0 && isTerminal(m))).toBeGreaterThan(-1);
    expect(at((m) => m.job === m0 && isTerminal(m))).toBeLessThan(end);
    expect(at((m) => m.job === m1 && isTerminal(m))).toBeLessThan(end);
    await c.close();

    // Both members unsubscribed: their frames stop, and the batch is not said to have ended.
    const b2 = await jobBatch([slow('unfollowed 0', 10, 20), slow('unfollowed 1', 10, 20)]);
    const d = await open();
    d.send({ op: 'subscribe', batch: b2.id, id: 'b' });
    for (const j of b2.jobs) d.send({ op: 'unsubscribe', job: j, id: `u-${j}` });
    for (const j of b2.jobs) await api.finished(stack.apiKey, j);
    await roundTrip(d, 'p');
    expect(d.messages.filter((m) => m.type === 'batch_end')).toEqual([]);
    await d.close();
  });
});

describe('upgrades refused', () => {
  const wsUrl = () => `${stack.url.replace(/^http/, 'ws')}/v1/stream`;
  async function mint(): Promise<string> {
    const r = await fetch(`${stack.url}/v1/stream/tokens`, {
      method: 'POST',
      headers: { authorization: `Bearer ${stack.apiKey}` },
    });
    expect(r.status).toBe(201);
    return ((await r.json()) as { token: string }).token;
  }
  /** Opens a socket; resolves 101 on open, or the refusal's status, content type and body. */
  function connect(url: string, headers: Record<string, string> = {}) {
    return new Promise<{ status: number; type?: string; body?: unknown }>((resolve, reject) => {
      const ws = new WebSocket(url, { headers });
      ws.on('open', () => {
        ws.close();
        resolve({ status: 101 });
      });
      ws.on('unexpected-response', (_req, res) => {
        let text = '';
        res.on('data', (c: Buffer) => {
          text += c.toString();
        });
        res.on('end', () => {
          let body: unknown = text;
          try {
            body = JSON.parse(text);
          } catch {}
          resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type']), body });
        });
      });
      ws.on('error', (e) => reject(e));
    });
  }
  const openAIError = (code: string) => ({
    error: { message: expect.any(String), type: expect.any(String), param: null, code },
  });

  it('a plain GET (no upgrade) is 426 in OpenAI’s shape, and does not use up a stream token', async () => {
    const withKey = await fetch(`${stack.url}/v1/stream`, {
      headers: { authorization: `Bearer ${stack.apiKey}` },
    });
    expect(withKey.status).toBe(426);
    expect(withKey.headers.get('upgrade')).toBe('websocket');
    expect(await withKey.json()).toEqual(openAIError('invalid_request_error'));
    const token = await mint();
    const prefetch = await fetch(`${stack.url}/v1/stream?token=${token}`);
    expect(prefetch.status).toBe(426);
    expect(await prefetch.json()).toEqual(openAIError('invalid_request_error'));
    expect(await connect(`${wsUrl()}?token=${token}`, { origin: ALLOWED })).toEqual({ status: 101 });
  });

  it('an Origin not allowed is 403 in OpenAI’s shape, and does not use up a stream token', async () => {
    const token = await mint();
    const refused = await connect(`${wsUrl()}?token=${token}`, { origin: 'https://evil.example' });
    expect(refused).toMatchObject({ status: 403, body: openAIError('permission_denied') });
    expect(refused.type).toContain('application/json');
    const withKey = await connect(wsUrl(), {
      origin: 'https://evil.example',
      authorization: `Bearer ${stack.apiKey}`,
    });
    expect(withKey).toMatchObject({ status: 403, body: openAIError('permission_denied') });
    expect(await connect(`${wsUrl()}?token=${token}`, { origin: ALLOWED })).toEqual({ status: 101 });
    // Used once: gone.
    expect(await connect(`${wsUrl()}?token=${token}`, { origin: ALLOWED })).toMatchObject({ status: 401 });
  });
});

describe('a refused upgrade', () => {
  /**
   * A raw handshake on its own connection: the answer's status line, once the server closed the
   * connection (or what had come when `deadlineMs` passed: the server held it open).
   */
  function handshake(path: string, extra: Record<string, string>, deadlineMs = 5_000) {
    const url = new URL(stack.url);
    return new Promise<{ status: string; closed: boolean }>((resolve, reject) => {
      const sock = connectTcp(Number(url.port), url.hostname);
      let text = '';
      const timer = setTimeout(() => {
        sock.destroy();
        resolve({ status: text.split('\r\n')[0] ?? '', closed: false });
      }, deadlineMs);
      sock.on('data', (c: Buffer) => {
        text += c.toString();
      });
      sock.on('close', () => {
        clearTimeout(timer);
        resolve({ status: text.split('\r\n')[0] ?? '', closed: true });
      });
      sock.on('error', reject);
      const head = {
        Host: url.host,
        Upgrade: 'websocket',
        Connection: 'Upgrade',
        'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==',
        'Sec-WebSocket-Version': '13',
        ...extra,
      };
      sock.write(
        `GET ${path} HTTP/1.1\r\n${Object.entries(head)
          .map(([k, v]) => `${k}: ${v}\r\n`)
          .join('')}\r\n`,
      );
    });
  }

  it('is answered, then its connection closed by the server, not held open for good', async () => {
    // Before: each of these left the server's socket open (CLOSE-WAIT once the client went), a file
    // descriptor per refusal for anyone without a key, and a drain at shutdown that never ended.
    for (const [path, extra, status] of [
      ['/v1/stream?token=not-a-token', { Origin: ALLOWED }, 'HTTP/1.1 401'],
      ['/v1/stream', { Origin: ALLOWED, Authorization: 'Bearer sk-wrong' }, 'HTTP/1.1 401'],
      [
        '/v1/stream',
        { Origin: 'https://evil.example', Authorization: `Bearer ${stack.apiKey}` },
        'HTTP/1.1 403',
      ],
      ['/v1/stream', { Origin: ALLOWED, 'Sec-WebSocket-Version': '7' }, 'HTTP/1.1 400'],
      ['/v1/no-such-socket', { Origin: ALLOWED, Authorization: `Bearer ${stack.apiKey}` }, 'HTTP/1.1 404'],
    ] as const) {
      const r = await handshake(path, extra);
      expect({ path, ...r }).toMatchObject({ path, closed: true });
      expect(r.status.startsWith(status), `${path}: ${r.status}`).toBe(true);
    }
  });
});

describe('at most 256 subscriptions per socket', () => {
  it('counts job subscriptions, batch progress sent in one burst, job batch members and submit', async () => {
    // Members that run for minutes: their followers stay live through the test.
    const long = (i: number) => slow(`member ${i}`, 600, 200);
    const big = await jobBatch(Array.from({ length: 250 }, (_, i) => long(i)));
    const small = await jobBatch(Array.from({ length: 10 }, (_, i) => long(1000 + i)));
    const loner = await api.submit(stack.apiKey, long(2000));
    const progress: string[] = [];
    for (let i = 0; i < 10; i++) {
      const line = { custom_id: 'a', method: 'POST', url: '/v1/chat/completions', body: ask(long(3000 + i)) };
      const form = new FormData();
      form.append('purpose', 'batch');
      form.append('file', new Blob([`${JSON.stringify(line)}\n`]), 'in.jsonl');
      const auth = { authorization: `Bearer ${stack.apiKey}` };
      const f = (await (
        await fetch(`${stack.url}/v1/files`, { method: 'POST', headers: auth, body: form })
      ).json()) as {
        id: string;
      };
      const b = await fetch(`${stack.url}/v1/batches`, {
        method: 'POST',
        headers: { ...auth, 'content-type': 'application/json' },
        body: JSON.stringify({
          input_file_id: f.id,
          endpoint: '/v1/chat/completions',
          completion_window: '24h',
        }),
      });
      progress.push(((await b.json()) as { id: string }).id);
    }
    try {
      // 250 job subscriptions, then 10 batch-progress subscriptions in one burst: 6 fit.
      const c = await open();
      for (const [i, job] of big.jobs.entries()) c.send({ op: 'subscribe', job, id: `j${i}` });
      for (const [i, batch] of progress.entries()) c.send({ op: 'subscribe', batch, id: `p${i}` });
      const replies = await Promise.all(progress.map((_, i) => c.next((m) => m.id === `p${i}`)));
      expect(c.messages.filter((m) => m.type === 'ack' && String(m.id).startsWith('j'))).toHaveLength(250);
      expect(replies.filter((m) => m.type === 'ack')).toHaveLength(6);
      expect(replies.filter((m) => m.type === 'nack').map((m) => (m.error as { code: string }).code)).toEqual(
        Array(4).fill('rate_limit_exceeded'),
      );
      // Full: neither a job batch, nor a submit (refused before it creates a job).
      c.send({ op: 'subscribe', batch: small.id, id: 'small' });
      c.send({ op: 'submit', request: ask('one too many'), id: 'submit' });
      for (const id of ['small', 'submit'])
        expect(await c.next((m) => m.id === id), id).toMatchObject({
          type: 'nack',
          error: { code: 'rate_limit_exceeded', type: 'rate_limit_error' },
        });
      // Unsubscribing frees a place.
      c.send({ op: 'unsubscribe', job: big.jobs[0], id: 'u' });
      c.send({ op: 'subscribe', job: loner, id: 'loner' });
      expect(await c.next((m) => m.id === 'loner')).toMatchObject({ type: 'ack' });
      await c.close();

      // A job batch counts each member it follows: 250 + 1 + 10 > 256.
      const d = await open();
      d.send({ op: 'subscribe', batch: big.id, id: 'big' });
      expect(await d.next((m) => m.id === 'big')).toMatchObject({ type: 'ack', pending: 250 });
      d.send({ op: 'subscribe', job: loner, id: 'loner' });
      expect(await d.next((m) => m.id === 'loner')).toMatchObject({ type: 'ack' });
      d.send({ op: 'subscribe', batch: small.id, id: 'small' });
      expect(await d.next((m) => m.id === 'small')).toMatchObject({
        type: 'nack',
        batch: small.id,
        error: { code: 'rate_limit_exceeded' },
      });
      // Subscribing to the same batch again replaces it: no more followers.
      d.send({ op: 'subscribe', batch: big.id, id: 'again' });
      expect(await d.next((m) => m.id === 'again')).toMatchObject({ type: 'ack', pending: 250 });
      await d.close();
    } finally {
      const auth = { authorization: `Bearer ${stack.apiKey}` };
      for (const b of [big.id, small.id])
        await fetch(`${stack.url}/v1/jobs/batches/${b}/cancel`, { method: 'POST', headers: auth });
      // A batch's cancel lets members under way finish: these would run for minutes.
      await Promise.all(
        [...big.jobs, ...small.jobs].map((j) =>
          fetch(`${stack.url}/v1/jobs/${j}/cancel`, { method: 'POST', headers: auth }),
        ),
      );
      await fetch(`${stack.url}/v1/jobs/${loner}/cancel`, { method: 'POST', headers: auth });
      for (const b of progress)
        await fetch(`${stack.url}/v1/batches/${b}/cancel`, { method: 'POST', headers: auth });
    }
  }, 60_000);
});
