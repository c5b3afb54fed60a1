import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import { connect, type Socket } from 'node:net';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { gzipSync } from 'node:zlib';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DRAIN_FACTOR, drainBody } from '../services/ingress/src/plugins/lingering-close.ts';
import { type Stack, startStack } from './support/stack.ts';

/**
 * A body over BODY_LIMIT_BYTES gets its 413 even when the client writes the whole body before it
 * reads the answer (the openai and Anthropic SDKs, Python's urllib): the ingress reads and discards
 * the rest, bounded (lingering-close.ts): after the answer on a kept-alive connection, before it
 * when the client asked to close. Without that, the client saw a broken pipe about half the time,
 * took it for a network error and uploaded the body again.
 */
const LIMIT = 1024 * 1024;
const CAP = DRAIN_FACTOR * LIMIT;
const RECEIVE_MS = 8_000;

let stack: Stack;
beforeAll(async () => {
  stack = await startStack({
    providers: ['openai', 'anthropic'],
    // A request that takes longer than this to arrive is answered 408 and closed (tested below).
    // Uploads here are below the JSON limit, so the cap of an unread body is the JSON one's.
    ingressEnv: {
      BODY_LIMIT_BYTES: String(LIMIT),
      REQUEST_RECEIVE_TIMEOUT_MS: String(RECEIVE_MS),
      FILE_MAX_BYTES: String(LIMIT),
    },
  });
}, 120_000);
afterAll(async () => {
  await stack?.stop();
});

const big = (bytes: number) => 'x'.repeat(bytes);

interface Exchange {
  /** A write failed (EPIPE, ECONNRESET) before the whole body was sent: what the SDKs report. */
  writeError?: string;
  written: number;
  status?: number;
  headers: Record<string, string>;
  body: string;
}

/** The answer in `text`, once it is whole (its Content-Length received). */
function parseAnswer(text: string): Omit<Exchange, 'written' | 'writeError'> & { whole: boolean } {
  const split = text.indexOf('\r\n\r\n');
  const top = split < 0 ? text : text.slice(0, split);
  const body = split < 0 ? '' : text.slice(split + 4);
  const [statusLine = '', ...headerLines] = top.split('\r\n');
  const headers = Object.fromEntries(
    headerLines.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]),
  );
  const status = Number(statusLine.split(' ')[1]) || undefined;
  const whole = split >= 0 && Buffer.byteLength(body) >= Number(headers['content-length'] ?? Number.NaN);
  return { status, headers, body, whole };
}

/**
 * One request over a raw socket, as urllib sends it: every byte of the body is written before the
 * answer is looked at, and a failed write is the outcome. `body` is one buffer (sent with its
 * Content-Length) or an iterable of chunks (sent chunked). `connection` is the request's
 * Connection header: `close` as urllib sends, or `keep-alive` as the SDKs do.
 */
async function exchange(opts: {
  path: string;
  body: Buffer | Iterable<Buffer>;
  connection: 'close' | 'keep-alive';
  headers?: Record<string, string>;
  /** Stop writing (and fail) past this many bytes: a guard for the endless body. */
  maxWrite?: number;
}): Promise<Exchange> {
  const url = new URL(stack.url);
  const socket = connect(Number(url.port), url.hostname);
  await once(socket, 'connect');
  const received: Buffer[] = [];
  let answered = () => {};
  const whole = new Promise<void>((r) => {
    answered = r;
  });
  socket.on('data', (b: Buffer) => {
    received.push(b);
    if (parseAnswer(Buffer.concat(received).toString('utf8')).whole) answered();
  });
  let writeError: string | undefined;
  socket.on('error', (e: NodeJS.ErrnoException) => {
    writeError ??= e.code ?? e.message;
  });
  const closed = new Promise<void>((r) => socket.once('close', () => r()));
  const chunked = !Buffer.isBuffer(opts.body);
  const head = {
    host: url.host,
    authorization: `Bearer ${stack.apiKey}`,
    'x-api-key': stack.apiKey,
    'anthropic-version': '2023-06-01',
    'content-type': 'application/json',
    connection: opts.connection,
    ...(Buffer.isBuffer(opts.body)
      ? { 'content-length': String(opts.body.length) }
      : { 'transfer-encoding': 'chunked' }),
    ...opts.headers,
  };
  const lines = Object.entries(head).map(([k, v]) => `${k}: ${v}\r\n`);
  let written = 0;
  const write = async (b: Buffer | string) => {
    if (writeError || socket.destroyed) return false;
    if (!socket.write(b)) {
      await Promise.race([new Promise<void>((r) => socket.once('drain', () => r())), closed]);
    }
    return !writeError && !socket.destroyed;
  };
  await write(`POST ${opts.path} HTTP/1.1\r\n${lines.join('')}\r\n`);
  const chunks = Buffer.isBuffer(opts.body) ? [opts.body] : opts.body;
  for (const c of chunks) {
    if (opts.maxWrite !== undefined && written > opts.maxWrite) {
      writeError ??= 'client gave up: the server never cut the body';
      break;
    }
    const ok = chunked
      ? (await write(`${c.length.toString(16)}\r\n`)) && (await write(c)) && (await write('\r\n'))
      : await write(c);
    if (!ok) {
      // Cut while the body was being written: a reset (its error) or a clean close (no error: the
      // server's FIN, then its socket gone, can reach the client before any write fails).
      writeError ??= 'closed by the server';
      break;
    }
    written += c.length;
  }
  if (chunked) await write('0\r\n\r\n');
  // The whole answer, or the server closing (a kept-alive connection stays open after its answer).
  await Promise.race([whole, closed]);
  socket.destroy();
  const { status, headers, body } = parseAnswer(Buffer.concat(received).toString('utf8'));
  return { writeError, written, status, headers, body };
}

function* repeat(chunk: Buffer, times: number): Generator<Buffer> {
  for (let i = 0; i < times; i++) yield chunk;
}

const chatJson = (content: string) =>
  JSON.stringify({ model: 'openai/gpt-4o-mini', messages: [{ role: 'user', content }] });

const ingressPid = () => {
  const pid = stack.services.find((s) => s.name === 'ingress')?.proc.pid;
  if (!pid) throw new Error('no ingress process');
  return pid;
};
/** Bytes the ingress process has read (every read(2), sockets included) and its resident memory. */
async function ingressCounters(): Promise<{ readBytes: number; rss: number }> {
  const pid = ingressPid();
  const io = await readFile(`/proc/${pid}/io`, 'utf8');
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return {
    readBytes: Number(/^rchar:\s+(\d+)/m.exec(io)?.[1]),
    rss: Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1]) * 1024,
  };
}

describe('a body over BODY_LIMIT_BYTES', () => {
  // The reset raced the answer: about half of these failed as connection errors, so each asks 6 times.
  it('the openai SDK gets APIError 413 payload_too_large, not a connection error', async () => {
    const client = new OpenAI({ apiKey: stack.apiKey, baseURL: `${stack.url}/v1`, maxRetries: 0 });
    for (let i = 0; i < 6; i++) {
      const err = await client.chat.completions
        .create({ model: 'openai/gpt-4o-mini', messages: [{ role: 'user', content: big(7 * LIMIT) }] })
        .then(
          () => undefined,
          (e: unknown) => e,
        );
      expect(err).not.toBeInstanceOf(OpenAI.APIConnectionError);
      expect(err).toBeInstanceOf(OpenAI.APIError);
      expect(err).toMatchObject({ status: 413, code: 'payload_too_large', type: 'invalid_request_error' });
    }
    // The gateway still serves (on a new connection: the refused one was closed).
    const ok = await client.chat.completions.create({
      model: 'openai/gpt-4o-mini',
      messages: [{ role: 'user', content: 'Name a river.' }],
    });
    expect(ok.choices[0]?.message.role).toBe('assistant');
  });

  it('the Anthropic SDK gets a 413 in Anthropic’s shape on /v1/messages', async () => {
    const client = new Anthropic({ apiKey: stack.apiKey, baseURL: stack.url, maxRetries: 0 });
    for (let i = 0; i < 6; i++) {
      const err = await client.messages
        .create({
          model: 'anthropic/claude-haiku-4-5',
          max_tokens: 16,
          messages: [{ role: 'user', content: big(7 * LIMIT) }],
        })
        .then(
          () => undefined,
          (e: unknown) => e,
        );
      expect(err).not.toBeInstanceOf(Anthropic.APIConnectionError);
      expect(err).toBeInstanceOf(Anthropic.APIError);
      expect(err).toMatchObject({
        status: 413,
        error: { type: 'error', error: { type: 'request_too_large' } },
      });
    }
  });

  it.each([
    ['close', true],
    ['keep-alive', false],
  ] as const)(
    'a client that writes the whole body before it reads gets the 413 (Connection: %s), sized or chunked',
    async (connection, closes) => {
      const body = Buffer.from(chatJson(big(6 * LIMIT)));
      const sized = await exchange({ path: '/v1/chat/completions', body, connection });
      expect(sized.writeError).toBeUndefined();
      expect(sized.status).toBe(413);
      // Closed after the body (asked to close), or kept alive (HTTP/1.1's default: no header), the
      // rest read on after the answer.
      expect(sized.headers.connection).toBe(closes ? 'close' : undefined);
      expect(JSON.parse(sized.body)).toMatchObject({ error: { code: 'payload_too_large' } });

      // No Content-Length: the limit is reached while reading.
      const chunked = await exchange({
        path: '/v1/chat/completions',
        body: repeat(Buffer.alloc(64 * 1024, 'x'), (6 * LIMIT) / (64 * 1024)),
        connection,
      });
      expect(chunked.writeError).toBeUndefined();
      expect(chunked.status).toBe(413);
      expect(JSON.parse(chunked.body)).toMatchObject({ error: { code: 'payload_too_large' } });

      const messages = await exchange({
        path: '/v1/messages',
        body: repeat(Buffer.alloc(64 * 1024, 'x'), 96),
        connection,
      });
      expect(messages.writeError).toBeUndefined();
      expect(messages.status).toBe(413);
      expect(JSON.parse(messages.body)).toMatchObject({
        type: 'error',
        error: { type: 'request_too_large' },
      });
    },
  );

  it.each(['close', 'keep-alive'] as const)(
    'a gzip body that decodes past the limit gets the 413 (Connection: %s)',
    async (connection) => {
      // Random text compresses little: ~4 MB of gzip, sent chunked, decoding past 1 MiB early on.
      const packed = gzipSync(Buffer.from(chatJson(randomBytes(4 * LIMIT).toString('base64'))));
      expect(packed.length).toBeGreaterThan(4 * LIMIT);
      const slices = function* () {
        for (let i = 0; i < packed.length; i += 64 * 1024) yield packed.subarray(i, i + 64 * 1024);
      };
      const headers = { 'content-encoding': 'gzip' };
      const chunked = await exchange({ path: '/v1/chat/completions', body: slices(), headers, connection });
      expect(chunked.writeError).toBeUndefined();
      expect(chunked.status).toBe(413);
      expect(JSON.parse(chunked.body)).toMatchObject({ error: { code: 'payload_too_large' } });
      // With its Content-Length (over the limit as sent): refused before reading, then drained.
      const sized = await exchange({ path: '/v1/chat/completions', body: packed, headers, connection });
      expect(sized.writeError).toBeUndefined();
      expect(sized.status).toBe(413);
    },
  );

  it('a declared Content-Length past the cap is answered at once and the connection closed', async () => {
    const url = new URL(stack.url);
    const socket: Socket = connect(Number(url.port), url.hostname);
    await once(socket, 'connect');
    socket.write(
      `POST /v1/chat/completions HTTP/1.1\r\nhost: ${url.host}\r\nauthorization: Bearer ${stack.apiKey}\r\n` +
        `content-type: application/json\r\ncontent-length: ${CAP + 1}\r\n\r\n{"model":`,
    );
    const received: Buffer[] = [];
    socket.on('data', (b: Buffer) => received.push(b));
    socket.on('error', () => {});
    await once(socket, 'close');
    const text = Buffer.concat(received).toString('utf8');
    expect(text).toMatch(/^HTTP\/1\.1 413 /);
    expect(text.toLowerCase()).toContain('connection: close');
  });

  it.each(['close', 'keep-alive'] as const)(
    'an endless body (Connection: %s) is read up to the cap, then cut; the ingress keeps none of it',
    async (connection) => {
      const before = await ingressCounters();
      const started = Date.now();
      const r = await exchange({
        path: '/v1/chat/completions',
        body: repeat(Buffer.alloc(64 * 1024, 'x'), Number.POSITIVE_INFINITY),
        connection,
        // A client past 4× the cap was never cut.
        maxWrite: 4 * CAP,
      });
      const after = await ingressCounters();
      // Cut by the server (a reset or a close while writing), not by the client's guard.
      expect(r.writeError).toBeDefined();
      expect(r.writeError).not.toMatch(/client gave up/);
      expect(r.written).toBeLessThan(4 * CAP);
      expect(Date.now() - started).toBeLessThan(20_000);
      // It read past the limit up to the cap (lingering), not stopping at the limit.
      const read = after.readBytes - before.readBytes;
      expect(read).toBeGreaterThan(CAP);
      expect(read).toBeLessThan(CAP + 4 * LIMIT);
      // Discarded, never buffered: the process did not grow by the bytes it read.
      expect(after.rss - before.rss).toBeLessThan(CAP / 2);
    },
    30_000,
  );
});

describe('a body nobody will read', () => {
  it('after an early answer (no valid key: 401) is read only up to the cap, then the connection is cut', async () => {
    const before = await ingressCounters();
    const r = await exchange({
      path: '/v1/chat/completions',
      body: repeat(Buffer.alloc(64 * 1024, 'x'), Number.POSITIVE_INFINITY),
      connection: 'keep-alive',
      headers: { authorization: 'Bearer fg_wrong_000000000000', 'x-api-key': 'fg_wrong_000000000000' },
      // Before, Node read the rest of the body itself, without end: the client gave up here.
      maxWrite: 4 * CAP,
    });
    expect(r.status).toBe(401);
    expect(r.writeError).toBeDefined();
    expect(r.writeError).not.toMatch(/client gave up/);
    const read = (await ingressCounters()).readBytes - before.readBytes;
    expect(read).toBeLessThan(CAP + 4 * LIMIT);
  }, 30_000);

  it('trickled in, with a valid key, is answered 408 once REQUEST_RECEIVE_TIMEOUT_MS has passed, and closed', async () => {
    const url = new URL(stack.url);
    const socket: Socket = connect(Number(url.port), url.hostname);
    await once(socket, 'connect');
    socket.on('error', () => {});
    const received: Buffer[] = [];
    socket.on('data', (b: Buffer) => received.push(b));
    const closed = once(socket, 'close');
    const started = Date.now();
    socket.write(
      `POST /v1/chat/completions HTTP/1.1\r\nhost: ${url.host}\r\nauthorization: Bearer ${stack.apiKey}\r\n` +
        `content-type: application/json\r\ncontent-length: 100000\r\n\r\n{`,
    );
    // A byte every 200 ms, as a slow-body attack sends it, until the ingress closes the connection.
    const trickle = setInterval(() => socket.writable && socket.write(' '), 200);
    try {
      await closed;
    } finally {
      clearInterval(trickle);
    }
    const elapsed = Date.now() - started;
    expect(elapsed).toBeGreaterThanOrEqual(RECEIVE_MS - 500);
    // Node checks every tenth of the timeout (app.ts): closed soon after it.
    expect(elapsed).toBeLessThan(RECEIVE_MS + 10_000);
    const text = Buffer.concat(received).toString('utf8');
    expect(text).toMatch(/^HTTP\/1\.1 408 /);
    expect(text).toContain('The request took too long to arrive.');
  }, 30_000);
});

describe('drainBody', () => {
  let server: Server;
  let port: number;
  let results: Promise<boolean>[] = [];
  beforeAll(async () => {
    server = createServer((req, res) => {
      const drained = drainBody(req, { capBytes: 1024 * 1024, timeoutMs: 300 });
      results.push(drained);
      void drained.then(() => res.writeHead(413, { connection: 'close' }).end());
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    port = (server.address() as { port: number }).port;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  it('gives up on a trickle after its time bound, and the connection is closed', async () => {
    results = [];
    const socket = connect(port, '127.0.0.1');
    await once(socket, 'connect');
    socket.on('error', () => {});
    let answer = '';
    socket.on('data', (b: Buffer) => {
      answer += b.toString();
    });
    const closed = new Promise<void>((r) => socket.once('close', () => r()));
    // 3 bytes of 1,000, then nothing more.
    socket.write('POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\nabc');
    const started = Date.now();
    await closed;
    expect(await results[0]).toBe(false);
    expect(answer).toMatch(/^HTTP\/1\.1 413 /);
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
    expect(Date.now() - started).toBeLessThan(5_000);
  });
});
