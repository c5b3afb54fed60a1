import { PassThrough, type Readable, type Transform } from 'node:stream';
import { createBrotliDecompress, createGunzip, createInflate, createZstdDecompress } from 'node:zlib';
import type { FastifyInstance, FastifyRequest } from 'fastify';

/**
 * A compressed request body (`Content-Encoding: gzip`, `deflate`, `br` or `zstd`), as clients send
 * large prompts and batch lines, is decoded before it is parsed. Only JSON bodies: the file upload
 * (multipart) reads the connection itself. BODY_LIMIT_BYTES bounds the decoded body (Fastify counts
 * what the decoder gives it: a small body that inflates past the limit is a 413, not a heap), and a
 * Content-Length is checked against the encoded bytes, as sent. An encoding the gateway cannot
 * decode is a 415 that names the ones it can; a body that does not decode, a 400.
 */

const DECODERS: Readonly<Record<string, () => Transform>> = {
  gzip: createGunzip,
  'x-gzip': createGunzip,
  deflate: createInflate,
  br: createBrotliDecompress,
  zstd: createZstdDecompress,
};

/** Fastify answers an error with a 4xx `statusCode` in the door's shape with its message (errors.ts). */
const clientError = (statusCode: number, message: string) =>
  Object.assign(new Error(message), { statusCode });

/**
 * Whether the request carries a body (RFC 9112 §6.3: a Transfer-Encoding, or a Content-Length above
 * 0). One without (`GET /v1/models`, a DELETE, a bodyless cancel) has nothing encoded: its
 * Content-Encoding header says nothing and is let be.
 */
const hasBody = (req: FastifyRequest) =>
  req.headers['transfer-encoding'] !== undefined ||
  (req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0');

const isJson = (req: FastifyRequest) => /^application\/json\s*(;|$)/i.test(req.headers['content-type'] ?? '');

/** A decoded stream that Fastify's body reader can limit: it reports the encoded bytes it read. */
type Decoded = PassThrough & { receivedEncodedLength: number };

export function registerContentEncoding(app: FastifyInstance): void {
  // A callback hook, not an async one: it runs on every request with a body, and almost never acts.
  app.addHook('preParsing', (req, _reply, payload, done) => {
    const header = req.headers['content-encoding'];
    if (header === undefined) return done(null, payload);
    const encoding = header.trim().toLowerCase();
    if (encoding === '' || encoding === 'identity' || !hasBody(req)) return done(null, payload);
    const decoder = Object.hasOwn(DECODERS, encoding) ? DECODERS[encoding] : undefined;
    if (!decoder || !isJson(req)) {
      return done(
        clientError(
          415,
          decoder
            ? 'Content-Encoding is supported on JSON bodies only: send the file upload uncompressed.'
            : `Unsupported Content-Encoding '${header.slice(0, 40)}': send the body as identity, gzip, deflate, br or zstd (one of them).`,
        ),
      );
    }
    done(null, decode(payload, decoder(), encoding));
  });
}

function decode(payload: Readable, decoder: Transform, encoding: string): Decoded {
  const out = new PassThrough() as Decoded;
  out.receivedEncodedLength = 0;
  payload.on('data', (chunk: Buffer) => {
    out.receivedEncodedLength += chunk.length;
  });
  payload.on('error', (e) => out.destroy(e));
  decoder.on('error', () =>
    out.destroy(
      clientError(400, `The request body is not valid ${encoding} data (Content-Encoding: ${encoding}).`),
    ),
  );
  payload.pipe(decoder).pipe(out);
  return out;
}
