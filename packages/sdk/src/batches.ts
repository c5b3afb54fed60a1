import type { BatchCreate, BatchObject, ExpiresAfter, FileObject } from '@faregate/contracts/openai-batches';
import type { StreamConnection } from './connection.ts';
import type { HttpClient } from './http.ts';
import type { BatchProgress, RequestOptions, SubscribeOptions } from './types.ts';

/** A page of a list route (`GET /v1/files`, `GET /v1/batches`), as OpenAI's. */
export interface Page<T> {
  object: 'list';
  data: T[];
  first_id?: string | null;
  last_id?: string | null;
  has_more: boolean;
}

export interface ListOptions extends RequestOptions {
  /** The last id of the previous page. */
  after?: string;
  limit?: number;
}

const query = (o: ListOptions) => {
  const q = new URLSearchParams();
  if (o.after) q.set('after', o.after);
  if (o.limit !== undefined) q.set('limit', String(o.limit));
  const s = q.toString();
  return s ? `?${s}` : '';
};

/**
 * OpenAI's Files API (`/v1/files`): batch input files in, batch output and error files out.
 *
 *   const f = await sy.files.create(await openAsBlob('requests.jsonl'), { filename: 'requests.jsonl' });
 *   const text = await (await sy.files.content(b.output_file_id)).text();
 */
export class Files {
  readonly #http: HttpClient;

  constructor(http: HttpClient) {
    this.#http = http;
  }

  /**
   * `POST /v1/files` (multipart). A Blob is streamed as it is read (Node's `fs.openAsBlob` reads the
   * file from disk, never whole in memory); a string or bytes are sent as they are.
   */
  create(
    file: Blob | string | Uint8Array,
    opts: RequestOptions & {
      filename?: string;
      purpose?: 'batch';
      /** The file expires this long after its creation (OpenAI's `expires_after`); default never. */
      expiresAfter?: ExpiresAfter;
    } = {},
  ): Promise<FileObject> {
    const form = new FormData();
    form.set('purpose', opts.purpose ?? 'batch');
    if (opts.expiresAfter) {
      // As OpenAI's SDKs send the object in a form.
      form.set('expires_after[anchor]', opts.expiresAfter.anchor);
      form.set('expires_after[seconds]', String(opts.expiresAfter.seconds));
    }
    const blob = file instanceof Blob ? file : new Blob([file], { type: 'application/jsonl' });
    form.set('file', blob, opts.filename ?? 'batch.jsonl');
    return this.#http.json<FileObject>({
      method: 'POST',
      path: '/v1/files',
      body: form,
      signal: opts.signal,
      idempotent: false,
    });
  }

  /** `GET /v1/files/{id}`. */
  retrieve(id: string, opts: RequestOptions = {}): Promise<FileObject> {
    return this.#http.json({
      method: 'GET',
      path: `/v1/files/${enc(id)}`,
      signal: opts.signal,
      idempotent: true,
    });
  }

  /** `GET /v1/files`, newest first. */
  list(opts: ListOptions = {}): Promise<Page<FileObject>> {
    return this.#http.json({
      method: 'GET',
      path: `/v1/files${query(opts)}`,
      signal: opts.signal,
      idempotent: true,
    });
  }

  /** `DELETE /v1/files/{id}`. */
  delete(id: string, opts: RequestOptions = {}): Promise<{ id: string; object: 'file'; deleted: boolean }> {
    return this.#http.json({
      method: 'DELETE',
      path: `/v1/files/${enc(id)}`,
      signal: opts.signal,
      idempotent: true,
    });
  }

  /**
   * `GET /v1/files/{id}/content`: the response, its body unread, so a large file can be streamed
   * (`res.body`) rather than held whole (`await res.text()`).
   */
  content(id: string, opts: RequestOptions = {}): Promise<Response> {
    return this.#http.call({
      method: 'GET',
      path: `/v1/files/${enc(id)}/content`,
      signal: opts.signal,
      idempotent: true,
      accept: 'application/jsonl, application/octet-stream, */*',
    });
  }
}

/**
 * OpenAI's Batch API (`/v1/batches`), plus the gateway's progress stream of a batch over the shared
 * WebSocket.
 *
 *   const b = await sy.batches.create({ input_file_id: f.id, endpoint: '/v1/chat/completions' });
 *   for await (const e of sy.batches.progress(b.id)) console.log(e.request_counts);
 */
export class Batches {
  readonly #http: HttpClient;
  readonly #stream: StreamConnection;

  constructor(http: HttpClient, stream: StreamConnection) {
    this.#http = http;
    this.#stream = stream;
  }

  /** `POST /v1/batches`; `completion_window` defaults to `24h`. */
  create(
    body: Omit<BatchCreate, 'completion_window'> & { completion_window?: '24h' },
    opts: RequestOptions = {},
  ): Promise<BatchObject> {
    return this.#http.json({
      method: 'POST',
      path: '/v1/batches',
      body: { completion_window: '24h', ...body },
      signal: opts.signal,
      idempotent: false,
    });
  }

  /** `GET /v1/batches/{id}`. */
  retrieve(id: string, opts: RequestOptions = {}): Promise<BatchObject> {
    return this.#http.json({
      method: 'GET',
      path: `/v1/batches/${enc(id)}`,
      signal: opts.signal,
      idempotent: true,
    });
  }

  /** `GET /v1/batches`, newest first (`after`: the last id of the previous page). */
  list(opts: ListOptions = {}): Promise<Page<BatchObject>> {
    return this.#http.json({
      method: 'GET',
      path: `/v1/batches${query(opts)}`,
      signal: opts.signal,
      idempotent: true,
    });
  }

  /** `POST /v1/batches/{id}/cancel`: no more lines start; what finished is kept. */
  cancel(id: string, opts: RequestOptions = {}): Promise<BatchObject> {
    return this.#http.json({
      method: 'POST',
      path: `/v1/batches/${enc(id)}/cancel`,
      signal: opts.signal,
      idempotent: true,
    });
  }

  /**
   * The batch's progress after `after` (default: from its first event): a `batch_line` for each
   * line that ended and a `batch_status` for each status reached, each once and in order, every one
   * with the batch's `request_counts`; it ends after the final status. It reconnects and resumes by
   * itself. If the gateway no longer keeps the events after the cursor (its stream is bounded), one
   * `batch_gap` stands for those missed, with the counts as they are.
   */
  progress(batchId: string, opts: SubscribeOptions = {}): AsyncIterableIterator<BatchProgress> {
    return this.#stream.subscribeBatch(batchId, opts.after ?? 0, opts.signal);
  }
}

const enc = encodeURIComponent;
