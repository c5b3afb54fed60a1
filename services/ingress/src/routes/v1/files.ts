import { Readable } from 'node:stream';
import multipart from '@fastify/multipart';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { GatewayError } from '@faregate/contracts/errors';
import { newId } from '@faregate/contracts/ids';
import { ExpiresAfter, ListQuery, UPLOAD_PURPOSES } from '@faregate/contracts/openai-batches';
import type { IngressDeps } from '../../deps.ts';
import { principalOf } from '../../plugins/auth.ts';
import {
  deleteFile,
  fileNotFound,
  fileStore,
  fileView,
  finishFile,
  listFiles,
  ownedFile,
  writeFile,
} from '../../files/files.ts';
import { checkedUpload, type UploadCheck } from '../../files/upload.ts';
import { DRAIN_MS, drainBody, stillArriving } from '../../plugins/lingering-close.ts';

const IdParams = z.object({ id: z.string().max(200) });

const badUpload = (message: string, param: string | null = null) =>
  new GatewayError({ code: 'invalid_request_error', message, param });

/**
 * OpenAI's Files API for batch input files: upload (multipart, streamed into the file store while it
 * is counted and checked: never held whole in memory), list, retrieve, content (streamed), delete.
 * Files belong to the account: another tenant's file id is a 404.
 */
/**
 * A form past the multipart limits (a second file, more fields or parts than an upload has) as a 400
 * naming what to send, not busboy's own 413 ("reach files limit").
 */
function multipartLimit(e: unknown): GatewayError | undefined {
  const code = (e as { code?: unknown } | null)?.code;
  if (code === 'FST_FILES_LIMIT') return badUpload("Send one file, as the field 'file'.", 'file');
  if (code === 'FST_FIELDS_LIMIT' || code === 'FST_PARTS_LIMIT')
    return badUpload(
      "Too many form fields: an upload has the fields 'file', 'purpose' and, optionally, 'expires_after'.",
    );
  return undefined;
}

/** Where the client's body failed to parse, if it did: the first error of the form as it was read. */
interface ClientFault {
  error?: unknown;
}

/**
 * `source` (the form's parts, a file part's bytes) as it is, noting in `fault` an error it throws
 * itself: the multipart parser's, on the client's body. An error of the consumer (the file store)
 * does not pass through here, so it stays the server fault it is.
 */
async function* fromClient<T>(source: AsyncIterable<T>, fault: ClientFault): AsyncGenerator<T> {
  const it = source[Symbol.asyncIterator]();
  let ended = false;
  try {
    for (;;) {
      let r: IteratorResult<T>;
      try {
        r = await it.next();
      } catch (e) {
        ended = true;
        fault.error ??= e;
        throw e;
      }
      if (r.done) {
        ended = true;
        return;
      }
      yield r.value;
    }
  } finally {
    // The consumer stopped early (a refused upload, a failed store): the source is told so.
    if (!ended) await it.return?.();
  }
}

/** The form's boundary as its Content-Type gives it (`''`: given empty), for a message. */
function boundaryOf(contentType: string | undefined): string | undefined {
  const m = /;\s*boundary=(?:"([^"]*)"|([^;\s]*))/i.exec(contentType ?? '');
  const b = m?.[1] ?? m?.[2];
  return b?.slice(0, 70);
}

/**
 * The parser's refusal of the client's body (busboy's, @fastify/multipart's) as a 400 naming what is
 * wrong. Undefined for what is not the body's fault: a programming or configuration error thrown by
 * the parser (a TypeError, say) or a 5xx stays a server error.
 */
function malformedForm(e: unknown, contentType: string | undefined): GatewayError | undefined {
  if (
    !(e instanceof Error) ||
    e instanceof TypeError ||
    e instanceof RangeError ||
    e instanceof ReferenceError
  )
    return undefined;
  const { code, statusCode } = e as { code?: unknown; statusCode?: unknown };
  if (typeof statusCode === 'number' && statusCode >= 500) return undefined;
  if (code === 'FST_PROTO_VIOLATION')
    return badUpload(
      "Unrecognized form field: a field named after an Object.prototype property (such as '__proto__') is refused; send 'file' and 'purpose'.",
    );
  if (code === 'FST_INVALID_JSON_FIELD_ERROR')
    return badUpload(
      'A form field declared as application/json is not valid JSON: send the fields as plain text.',
    );
  const malformed = (why: string) => badUpload(`Malformed multipart/form-data body: ${why}`);
  const boundary = boundaryOf(contentType);
  const m = e.message;
  // No boundary parameter (busboy), or an empty one: busboy takes `boundary=` and then finds no
  // delimiter in the body.
  if (m === 'Multipart: Boundary not found' || boundary === '')
    return malformed(
      "the Content-Type header names no boundary: send 'multipart/form-data; boundary=…' with the boundary the body uses.",
    );
  // busboy searches for "\r\n--" + boundary, and refuses a needle past 256 bytes.
  if (/needle cannot have a length/i.test(m))
    return malformed('the boundary is too long (RFC 2046 allows at most 70 characters).');
  if (/unexpected end of multipart data/i.test(m) || code === 'FST_MP_PREMATURE_CLOSE')
    return malformed(
      `it ends before its closing boundary${boundary ? ` '--${boundary}--'` : ''} (cut short, or not delimited by the boundary its Content-Type names).`,
    );
  return malformed(`${m.slice(0, 200)}.`);
}

/**
 * Before answering an upload whose form is still arriving (its store failed mid-file, say): the rest
 * is read and discarded, bounded, so the client gets the answer and its connection serves the next
 * request. Left unread, the connection stalled with the client still writing: the OpenAI SDK's next
 * call on it hung. Past the bounds the connection is closed after the answer.
 */
async function readOn(req: FastifyRequest, reply: FastifyReply, capBytes: number): Promise<void> {
  if (!stillArriving(req.raw)) return;
  if (!(await drainBody(req.raw, { capBytes, timeoutMs: DRAIN_MS }))) reply.header('connection', 'close');
}

/** The upload's `expires_after` (seconds after its creation), checked as OpenAI does; undefined: none. */
function uploadExpiry(e: { anchor?: string; seconds?: string }): number | undefined {
  if (e.anchor === undefined && e.seconds === undefined) return undefined;
  if (e.anchor === undefined)
    throw badUpload("Missing required parameter: 'expires_after.anchor'.", 'expires_after.anchor');
  if (e.seconds === undefined)
    throw badUpload("Missing required parameter: 'expires_after.seconds'.", 'expires_after.seconds');
  const r = ExpiresAfter.safeParse({
    anchor: e.anchor,
    seconds: /^\d{1,10}$/.test(e.seconds) ? Number(e.seconds) : Number.NaN,
  });
  if (r.success) return r.data.seconds;
  if (r.error.issues[0]?.path[0] === 'anchor')
    throw badUpload(
      `Invalid value for 'expires_after.anchor': '${e.anchor.slice(0, 64)}'. Supported: 'created_at'.`,
      'expires_after.anchor',
    );
  throw badUpload(
    "Invalid value for 'expires_after.seconds': an integer from 3600 (an hour) to 2592000 (30 days).",
    'expires_after.seconds',
  );
}

/**
 * `attachment` with the file's name: an ASCII stand-in in `filename` (every other character `_`, so
 * no quote or CR/LF reaches the header), and the name as uploaded in `filename*` (RFC 6266 / 8187:
 * UTF-8, percent-encoded), which browsers and download tools prefer.
 */
export function contentDisposition(name: string): string {
  const ascii = name.replace(/[^\w.-]/g, '_');
  const exact = encodeURIComponent(name).replace(
    /['()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );
  return ascii === name
    ? `attachment; filename="${ascii}"`
    : `attachment; filename="${ascii}"; filename*=UTF-8''${exact}`;
}

/** The form fields of an upload besides `file`. */
const FORM_FIELDS = new Set(['purpose', 'expires_after[anchor]', 'expires_after[seconds]']);

export async function fileRoutes(app: FastifyInstance, deps: IngressDeps): Promise<void> {
  const { FILE_MAX_BYTES: maxBytes, FILE_MAX_LINES: maxLines } = deps.config;
  // The upload's own check answers first; this cap only bounds what busboy reads for one part.
  const partCap = maxBytes + 1024 * 1024;
  await app.register(multipart, {
    limits: { fileSize: partCap, files: 1, fields: 4, fieldSize: 1024, parts: 6 },
    throwFileSizeLimit: false,
  });
  const typed = app.withTypeProvider<ZodTypeProvider>();

  typed.post('/v1/files', async (req, reply) => {
    const principal = principalOf(req);
    if (!req.isMultipart())
      throw badUpload("Send the file as multipart/form-data with the fields 'file' and 'purpose'.");
    const id = newId('file');
    let purpose: string | undefined;
    let filename: string | undefined;
    let check: UploadCheck | undefined;
    let stored = false;
    // `expires_after[anchor]` and `expires_after[seconds]`, as the SDKs send the object in a form.
    const expiry: { anchor?: string; seconds?: string } = {};
    const seen = new Set<string>();
    let formError: GatewayError | undefined;
    const fault: ClientFault = {};
    try {
      for await (const part of fromClient(req.parts(), fault)) {
        if (part.type === 'file') {
          if (part.fieldname !== 'file' || check) {
            part.file.resume();
            throw badUpload(`Unexpected file field '${part.fieldname}': send one file, as 'file'.`, 'file');
          }
          filename = part.filename || 'upload.jsonl';
          check = { bytes: 0, lines: 0 };
          stored = true;
          const upload = { id, accountId: principal.accountId, purpose: 'batch', filename };
          // Through `fromClient`, so a body cut short is told from a store that failed.
          const bytes = Readable.from(fromClient(part.file, fault));
          await writeFile(deps, upload, checkedUpload(bytes, { maxBytes, maxLines }, check));
          if (part.file.truncated && !check.refused)
            check.refused = new GatewayError({
              code: 'payload_too_large',
              message: `File is too large: the limit is ${maxBytes} bytes.`,
              param: 'file',
            });
        } else {
          // Read on to the end of the form (the answer waits for the whole upload either way), then refuse.
          const name = part.fieldname;
          if (!FORM_FIELDS.has(name))
            formError ??= badUpload(
              `Unrecognized form field '${name.slice(0, 64)}': send 'file' and 'purpose' (and optionally 'expires_after[anchor]' and 'expires_after[seconds]').`,
              name.slice(0, 64),
            );
          else if (seen.has(name))
            formError ??= badUpload(`The form field '${name}' is given more than once; give it once.`, name);
          seen.add(name);
          const value = typeof part.value === 'string' ? part.value : '';
          if (name === 'purpose') purpose = value;
          else if (name === 'expires_after[anchor]') expiry.anchor = value;
          else if (name === 'expires_after[seconds]') expiry.seconds = value;
        }
      }
      if (formError) throw formError;
      if (!check || filename === undefined) throw badUpload("Missing required parameter: 'file'.", 'file');
      if (check.refused) throw check.refused;
      if (purpose === undefined) throw badUpload("Missing required parameter: 'purpose'.", 'purpose');
      if (!(UPLOAD_PURPOSES as readonly string[]).includes(purpose))
        throw badUpload(
          `Invalid value for 'purpose': '${purpose.slice(0, 64)}'. Supported: ${UPLOAD_PURPOSES.join(', ')}.`,
          'purpose',
        );
      if (!filename.toLowerCase().endsWith('.jsonl'))
        throw badUpload('Invalid file format for Batch API. Must be .jsonl', 'file');
      if (check.lines === 0)
        throw badUpload('The file is empty: a batch input file has one request per line.', 'file');
      const expiresAfter = uploadExpiry(expiry);
      const row = await finishFile(deps, id, check, expiresAfter);
      if (!row) throw fileNotFound(id);
      return reply.send(fileView(row));
    } catch (e) {
      if (stored)
        await deleteFile(deps, id).catch((err: unknown) =>
          req.log.warn({ err, id }, 'upload cleanup failed'),
        );
      await readOn(req, reply, partCap);
      // The client's body could not be read as a form: a 400 naming why (the limits as above),
      // whatever the store made of the bytes that stopped coming. Anything else is the server's.
      const client = fault.error;
      throw (
        multipartLimit(e) ??
        (client === undefined
          ? undefined
          : (multipartLimit(client) ?? malformedForm(client, req.headers['content-type']))) ??
        e
      );
    }
  });

  typed.get('/v1/files', { schema: { querystring: ListQuery } }, async (req) => {
    const principal = principalOf(req);
    const { data, hasMore } = await listFiles(deps, principal.accountId, req.query);
    return {
      object: 'list',
      data: data.map(fileView),
      first_id: data[0]?.id ?? null,
      last_id: data.at(-1)?.id ?? null,
      has_more: hasMore,
    };
  });

  typed.get('/v1/files/:id', { schema: { params: IdParams } }, async (req) => {
    const f = await ownedFile(deps, principalOf(req).accountId, req.params.id);
    if (!f) throw fileNotFound(req.params.id);
    return fileView(f);
  });

  typed.get('/v1/files/:id/content', { schema: { params: IdParams } }, async (req, reply) => {
    const f = await ownedFile(deps, principalOf(req).accountId, req.params.id);
    if (!f) throw fileNotFound(req.params.id);
    return reply
      .header('content-type', 'application/octet-stream')
      .header('content-length', String(f.bytes))
      .header('content-disposition', contentDisposition(f.filename))
      .send(Readable.from(fileStore(deps).get(f.id)));
  });

  typed.delete('/v1/files/:id', { schema: { params: IdParams } }, async (req) => {
    const f = await ownedFile(deps, principalOf(req).accountId, req.params.id);
    if (!f) throw fileNotFound(req.params.id);
    await deleteFile(deps, f.id);
    return { id: f.id, object: 'file', deleted: true };
  });
}
