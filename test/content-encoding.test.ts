import { brotliCompressSync, deflateSync, gzipSync, zstdCompressSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Stack, startStack } from './support/stack.ts';

/**
 * Compressed request bodies (`Content-Encoding`), as clients send large prompts: decoded before they
 * are parsed, the body limit applied to what they decode to (a zip bomb is a 413), and every
 * refusal in the door's error shape.
 */
let stack: Stack;
beforeAll(async () => {
  stack = await startStack({
    providers: ['openai', 'anthropic'],
    ingressEnv: { BODY_LIMIT_BYTES: '1048576' },
  });
}, 120_000);
afterAll(async () => {
  await stack?.stop();
});

const chat = { model: 'openai/gpt-4o-mini', messages: [{ role: 'user', content: 'Name a river.' }] };

async function post(path: string, body: Buffer | string, encoding: string, type = 'application/json') {
  const res = await fetch(`${stack.url}${path}`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${stack.apiKey}`,
      'anthropic-version': '2023-06-01',
      'content-type': type,
      'content-encoding': encoding,
    },
    body,
  });
  return { status: res.status, json: (await res.json()) as Record<string, never> };
}

describe('Content-Encoding on request bodies', () => {
  it.each([
    ['gzip', gzipSync],
    ['deflate', deflateSync],
    ['br', brotliCompressSync],
    ['zstd', zstdCompressSync],
  ] as const)('%s: decoded and answered as the same body sent plain', async (encoding, compress) => {
    const r = await post('/v1/chat/completions', compress(Buffer.from(JSON.stringify(chat))), encoding);
    expect(r.status).toBe(200);
    expect(r.json).toMatchObject({
      object: 'chat.completion',
      choices: [{ message: { role: 'assistant' } }],
    });
  });

  it('a small body that decodes past the body limit is a 413, not a heap', async () => {
    const bomb = JSON.stringify({
      ...chat,
      messages: [{ role: 'user', content: ' '.repeat(64 * 1024 * 1024) }],
    });
    const packed = gzipSync(Buffer.from(bomb), { level: 9 });
    expect(packed.length).toBeLessThan(200 * 1024);
    const r = await post('/v1/chat/completions', packed, 'gzip');
    expect(r.status).toBe(413);
    expect(r.json).toMatchObject({ error: { code: 'payload_too_large' } });
  });

  it('a body that does not decode is a 400 in the door’s shape (Anthropic’s on /v1/messages)', async () => {
    const plain = JSON.stringify(chat);
    const bad = await post('/v1/chat/completions', plain, 'gzip');
    expect(bad.status).toBe(400);
    expect(bad.json).toMatchObject({
      error: { type: 'invalid_request_error', message: expect.stringContaining('gzip') },
    });
    // Cut short: the decoder never sees the end of the stream.
    const cut = await post('/v1/chat/completions', gzipSync(Buffer.from(plain)).subarray(0, 20), 'gzip');
    expect(cut.status).toBe(400);
    const messages = await post('/v1/messages', plain, 'br');
    expect(messages.status).toBe(400);
    expect(messages.json).toMatchObject({ type: 'error', error: { type: 'invalid_request_error' } });
  });

  it('an encoding the gateway cannot decode is a 415 naming the ones it can; so is a compressed upload', async () => {
    const r = await post('/v1/chat/completions', JSON.stringify(chat), 'compress');
    expect(r.status).toBe(415);
    expect(r.json).toMatchObject({
      error: { message: expect.stringContaining('gzip, deflate, br or zstd') },
    });
    const messages = await post('/v1/messages', JSON.stringify(chat), 'gzip, br');
    expect(messages.status).toBe(415);
    expect(messages.json).toMatchObject({ type: 'error' });
    const form = new FormData();
    form.set('purpose', 'batch');
    form.set('file', new Blob(['{}\n']), 'in.jsonl');
    const req = new Request('http://x', { method: 'POST', body: form });
    const upload = await post(
      '/v1/files',
      gzipSync(Buffer.from(await req.arrayBuffer())),
      'gzip',
      req.headers.get('content-type') ?? '',
    );
    expect(upload.status).toBe(415);
    expect(upload.json).toMatchObject({ error: { message: expect.stringContaining('JSON bodies only') } });
  });

  it('a request without a body is answered whatever its Content-Encoding header says: nothing is encoded', async () => {
    const headers = { authorization: `Bearer ${stack.apiKey}`, 'content-encoding': 'gzip' };
    const models = await fetch(`${stack.url}/v1/models`, { headers });
    expect(models.status).toBe(200);
    expect(await models.json()).toMatchObject({ object: 'list' });
    // Not a 415: the file's own answer.
    const gone = await fetch(`${stack.url}/v1/files/file-none`, { method: 'DELETE', headers });
    expect(gone.status).toBe(404);
  });

  it('a JSON body sent as text/plain is an unsupported Content-Type, in the door’s shape', async () => {
    const r = await post('/v1/chat/completions', JSON.stringify(chat), 'identity', 'text/plain');
    expect(r.status).toBe(400);
    expect(r.json).toMatchObject({ error: { message: expect.stringContaining('Unsupported Content-Type') } });
    const m = await post('/v1/messages', JSON.stringify(chat), 'identity', 'text/plain; charset=utf-8');
    expect(m.status).toBe(400);
    expect(m.json).toMatchObject({
      type: 'error',
      error: { message: expect.stringContaining('Content-Type') },
    });
  });

  it('identity (and an empty value) is the body as sent', async () => {
    expect((await post('/v1/chat/completions', JSON.stringify(chat), 'identity')).status).toBe(200);
    expect((await post('/v1/chat/completions', JSON.stringify(chat), '')).status).toBe(200);
  });
});

describe('the bytes of a JSON body', () => {
  const withBytes = (bad: Buffer) => {
    const [head, tail] = JSON.stringify({ ...chat, messages: [{ role: 'user', content: 'X' }] }).split('X');
    return Buffer.concat([Buffer.from(head ?? ''), bad, Buffer.from(tail ?? '')]);
  };

  it('a body that is not UTF-8 is a 400 saying so, in the door’s shape, plain or compressed; the model never reads U+FFFD', async () => {
    // Latin-1 "é", a lone continuation byte, an overlong "/", a surrogate encoded as UTF-8.
    for (const bad of [[0xe9], [0x80], [0xc0, 0xaf], [0xed, 0xa0, 0x80]].map((b) => Buffer.from(b))) {
      const r = await post('/v1/chat/completions', withBytes(bad), 'identity');
      expect(r.status).toBe(400);
      expect(r.json).toMatchObject({
        error: { type: 'invalid_request_error', message: expect.stringContaining('UTF-8') },
      });
    }
    const gz = await post('/v1/chat/completions', gzipSync(withBytes(Buffer.from([0xff]))), 'gzip');
    expect(gz.status).toBe(400);
    expect(gz.json).toMatchObject({ error: { message: expect.stringContaining('UTF-8') } });
    const [head, tail] = JSON.stringify({
      model: 'claude-haiku-4-5',
      max_tokens: 16,
      messages: [{ role: 'user', content: 'X' }],
    }).split('X');
    const m = await post(
      '/v1/messages',
      Buffer.concat([Buffer.from(head ?? ''), Buffer.from([0xe9]), Buffer.from(tail ?? '')]),
      'identity',
    );
    expect(m.status).toBe(400);
    expect(m.json).toMatchObject({
      type: 'error',
      error: { type: 'invalid_request_error', message: expect.stringContaining('UTF-8') },
    });
  });

  it('a byte order mark opening the body is not part of the JSON (RFC 8259 lets a parser skip it); one inside is', async () => {
    const bom = Buffer.from([0xef, 0xbb, 0xbf]);
    const body = Buffer.from(JSON.stringify(chat));
    expect((await post('/v1/chat/completions', Buffer.concat([bom, body]), 'identity')).status).toBe(200);
    expect((await post('/v1/chat/completions', gzipSync(Buffer.concat([bom, body])), 'gzip')).status).toBe(
      200,
    );
    expect((await post('/v1/chat/completions', Buffer.concat([bom, bom, body]), 'identity')).status).toBe(
      400,
    );
  });

  it('UTF-8 of every width is taken as written', async () => {
    const r = await post('/v1/chat/completions', withBytes(Buffer.from('é Straße тест 漢字 🚀')), 'identity');
    expect(r.status).toBe(200);
  });
});
