import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';

/** Request bodies above this are refused (real APIs cap them too; Anthropic at 32 MB). */
const MAX_BODY = 32 * 1024 * 1024;

export class BodyError extends Error {}

/** Reads and parses a JSON body. Rejects with BodyError on invalid JSON or an oversized body. */
export function readJson(req: IncomingMessage): Promise<unknown> {
  // Plain listeners rather than `for await`: the async iterator costs measurably on the hot path.
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        req.removeAllListeners('data');
        req.resume();
        reject(new BodyError('request body too large'));
      } else chunks.push(c);
    });
    req.once('error', reject);
    req.once('end', () => {
      if (size > MAX_BODY) return;
      const text = chunks.length === 1 ? chunks[0]!.toString('utf8') : Buffer.concat(chunks).toString('utf8');
      if (text === '') return resolve(undefined);
      try {
        resolve(JSON.parse(text));
      } catch {
        reject(new BodyError('We could not parse the JSON body of your request.'));
      }
    });
  });
}

/** Drains a body we do not need, so keep-alive connections stay usable. */
export function drain(req: IncomingMessage): void {
  if (!req.readableEnded) req.resume();
}

export function sendJson(
  res: ServerResponse,
  status: number,
  body: string,
  headers?: Record<string, string>,
) {
  if (res.destroyed || res.headersSent) return;
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(body);
}

/** True once the client is gone (or the response is over). */
export function isClosed(res: ServerResponse): boolean {
  return res.destroyed || res.writableFinished;
}

/**
 * Waits `ms` unless the client goes away first (then resolves false). Listeners instead of an
 * AbortSignal: aborting builds a DOMException per request, a visible cost at benchmark rates.
 */
export function wait(ms: number, res: ServerResponse): Promise<boolean> {
  if (isClosed(res)) return Promise.resolve(false);
  if (ms <= 0) return Promise.resolve(true);
  return new Promise((resolve) => {
    const onClose = () => {
      clearTimeout(timer);
      resolve(false);
    };
    const timer = setTimeout(() => {
      res.off('close', onClose);
      resolve(true);
    }, ms);
    res.once('close', onClose);
  });
}

/** Resolves when the client goes away: the way a hang ends. */
export function untilClosed(res: ServerResponse): Promise<void> {
  if (isClosed(res)) return Promise.resolve();
  return new Promise((resolve) => res.once('close', () => resolve()));
}

/** Request ids: a random per-server prefix plus a counter (unique, and cheap on the hot path). */
export function requestIds(): (prefix: string) => string {
  const base = randomBytes(6).toString('hex');
  let n = 0;
  return (prefix) => `${prefix}${base}${(++n).toString(16).padStart(10, '0')}`;
}

/** The SDKs' retry attempt counter (`X-Stainless-Retry-Count`). */
export function retryCount(req: IncomingMessage): number {
  const v = req.headers['x-stainless-retry-count'];
  const n = typeof v === 'string' ? Number.parseInt(v, 10) : 0;
  return Number.isFinite(n) ? n : 0;
}

export function bearer(req: IncomingMessage): string | undefined {
  const h = req.headers.authorization;
  if (typeof h !== 'string') return undefined;
  const m = /^Bearer\s+(.*)$/i.exec(h.trim());
  return m ? m[1] : undefined;
}
