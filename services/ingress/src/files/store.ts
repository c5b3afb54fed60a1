import type pg from 'pg';

/**
 * Where file bytes live: one small interface, so Postgres (the default: works with compose and on one
 * machine) and object storage are interchangeable. File metadata (owner, name, size) is always in the
 * `files` table; a store only keeps bytes, and always streams them (never a whole file in memory).
 */
export interface FileStore {
  /** Writes the file's bytes from `source` in order (a failed put is cleaned up with `delete`). */
  put(fileId: string, source: AsyncIterable<Buffer>): Promise<void>;
  /** The file's bytes, streamed in chunks. */
  get(fileId: string): AsyncIterable<Buffer>;
  delete(fileId: string): Promise<void>;
  /** The ids of the files that have bytes stored (housekeeping and tests). */
  list(): AsyncIterable<string>;
}

/** Network failures on the way to a store (Node's and undici's codes). */
const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
]);

/**
 * The store could not be reached or failed on its side (an object store's 5xx, a network error):
 * worth trying again later, unlike an answer about the file itself. (Postgres: `isDbUnavailable`.)
 */
export function isStoreUnavailable(e: unknown): boolean {
  const x = e as { code?: unknown; $metadata?: { httpStatusCode?: unknown } } | null;
  const status = x?.$metadata?.httpStatusCode;
  if (typeof status === 'number' && status >= 500) return true;
  return typeof x?.code === 'string' && NETWORK_CODES.has(x.code);
}

/** Rows of about this many bytes: big enough to be cheap, small enough to bound memory. */
const CHUNK_BYTES = 1024 * 1024;
/** Chunks read per query while streaming a file out. */
const READ_AHEAD = 4;

/** File bytes in Postgres (`file_chunks`), one row per mebibyte. */
export class PgFileStore implements FileStore {
  readonly #pool: pg.Pool;

  constructor(pool: pg.Pool) {
    this.#pool = pool;
  }

  async put(fileId: string, source: AsyncIterable<Buffer>): Promise<void> {
    let seq = 0;
    let parts: Buffer[] = [];
    let size = 0;
    const flush = async () => {
      if (size === 0) return;
      const data = parts.length === 1 && parts[0] ? parts[0] : Buffer.concat(parts, size);
      parts = [];
      size = 0;
      await this.#pool.query('INSERT INTO file_chunks (file_id, seq, data) VALUES ($1, $2, $3)', [
        fileId,
        seq++,
        data,
      ]);
    };
    for await (const b of source) {
      let buf = b;
      while (buf.length > 0) {
        const take = Math.min(buf.length, CHUNK_BYTES - size);
        parts.push(buf.subarray(0, take));
        size += take;
        buf = buf.subarray(take);
        if (size >= CHUNK_BYTES) await flush();
      }
    }
    await flush();
  }

  async *get(fileId: string): AsyncIterable<Buffer> {
    let next = 0;
    for (;;) {
      const r = await this.#pool.query<{ seq: number; data: Buffer }>(
        'SELECT seq, data FROM file_chunks WHERE file_id = $1 AND seq >= $2 ORDER BY seq LIMIT $3',
        [fileId, next, READ_AHEAD],
      );
      for (const row of r.rows) yield row.data;
      if (r.rows.length < READ_AHEAD) return;
      next = (r.rows.at(-1)?.seq ?? next) + 1;
    }
  }

  async delete(fileId: string): Promise<void> {
    await this.#pool.query('DELETE FROM file_chunks WHERE file_id = $1', [fileId]);
  }

  async *list(): AsyncIterable<string> {
    const r = await this.#pool.query<{ file_id: string }>('SELECT DISTINCT file_id FROM file_chunks');
    for (const row of r.rows) yield row.file_id;
  }
}

/** Splits a byte stream into lines (without their `\n`; a trailing `\r` is dropped), streamed. */
export async function* linesOf(source: AsyncIterable<Buffer>): AsyncIterable<string> {
  let carry: Buffer[] = [];
  for await (const b of source) {
    let start = 0;
    for (let i = b.indexOf(10); i !== -1; i = b.indexOf(10, start)) {
      // A line within one chunk (most) is decoded where it lies; one split across chunks is joined.
      if (carry.length === 0) yield text(b, start, i);
      else {
        carry.push(b.subarray(start, i));
        const whole = Buffer.concat(carry);
        yield text(whole, 0, whole.length);
        carry = [];
      }
      start = i + 1;
    }
    if (start < b.length) carry.push(b.subarray(start));
  }
  if (carry.length > 0) {
    const whole = Buffer.concat(carry);
    yield text(whole, 0, whole.length);
  }
}

const text = (b: Buffer, start: number, end: number) =>
  b.toString('utf8', start, end > start && b[end - 1] === 13 ? end - 1 : end);
