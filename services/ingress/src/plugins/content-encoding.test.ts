import { gzipSync } from 'node:zlib';
import Fastify from 'fastify';
import { describe, expect, it } from 'vitest';
import { registerContentEncoding } from './content-encoding.ts';

async function app() {
  const a = Fastify();
  registerContentEncoding(a);
  a.get('/v1/models', async () => ({ object: 'list' }));
  a.delete('/v1/files/:id', async () => ({ deleted: true }));
  a.post('/v1/batches/:id/cancel', async () => ({ status: 'cancelling' }));
  a.post('/v1/chat/completions', async (req) => ({ got: req.body }));
  a.addContentTypeParser('multipart/form-data', (_req, payload, done) => {
    payload.resume();
    payload.on('end', () => done(null, {}));
  });
  a.post('/v1/files', async () => ({ uploaded: true }));
  await a.ready();
  return a;
}

describe('Content-Encoding', () => {
  it('on a request without a body (no Content-Length or 0, no Transfer-Encoding) is let be: nothing is encoded', async () => {
    const a = await app();
    const gzip = { 'content-encoding': 'gzip' };
    const models = await a.inject({ method: 'GET', url: '/v1/models', headers: gzip });
    expect([models.statusCode, models.json()]).toEqual([200, { object: 'list' }]);
    const del = await a.inject({ method: 'DELETE', url: '/v1/files/file-1', headers: gzip });
    expect([del.statusCode, del.json()]).toEqual([200, { deleted: true }]);
    // inject sends no Content-Length without a payload; curl -X POST likewise.
    const cancel = await a.inject({ method: 'POST', url: '/v1/batches/b/cancel', headers: gzip });
    expect([cancel.statusCode, cancel.json()]).toEqual([200, { status: 'cancelling' }]);
    const empty = await a.inject({
      method: 'POST',
      url: '/v1/batches/b/cancel',
      headers: { ...gzip, 'content-length': '0' },
    });
    expect(empty.statusCode).toBe(200);
    await a.close();
  });

  it('on a body: JSON is decoded, a multipart upload is still a 415', async () => {
    const a = await app();
    const chat = await a.inject({
      method: 'POST',
      url: '/v1/chat/completions',
      headers: { 'content-encoding': 'gzip', 'content-type': 'application/json' },
      payload: gzipSync(Buffer.from('{"model":"m"}')),
    });
    expect(chat.json()).toEqual({ got: { model: 'm' } });
    const upload = await a.inject({
      method: 'POST',
      url: '/v1/files',
      headers: { 'content-encoding': 'gzip', 'content-type': 'multipart/form-data; boundary=x' },
      payload: gzipSync(Buffer.from('--x--\r\n')),
    });
    expect(upload.statusCode).toBe(415);
    expect(upload.json()).toMatchObject({ message: expect.stringContaining('JSON bodies only') });
    await a.close();
  });
});
