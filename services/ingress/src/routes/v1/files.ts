import { Readable } from 'node:stream';
import multipart from '@fastify/multipart';
import type { FastifyInstance } from 'fastify';
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
  await app.register(multipart, {
    // The upload's own check answers first; this cap only bounds what busboy reads for one part.
    limits: { fileSize: maxBytes + 1024 * 1024, files: 1, fields: 4, fieldSize: 1024, parts: 6 },
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
    try {
      for await (const part of req.parts()) {
        if (part.type === 'file') {
          if (part.fieldname !== 'file' || check) {
            part.file.resume();
            throw badUpload(`Unexpected file field '${part.fieldname}': send one file, as 'file'.`, 'file');
          }
          filename = part.filename || 'upload.jsonl';
          check = { bytes: 0, lines: 0 };
          stored = true;
          const upload = { id, accountId: principal.accountId, purpose: 'batch', filename };
          await writeFile(deps, upload, checkedUpload(part.file, { maxBytes, maxLines }, check));
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
      throw multipartLimit(e) ?? e;
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
