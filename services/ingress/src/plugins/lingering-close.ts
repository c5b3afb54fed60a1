import type { IncomingMessage } from 'node:http';
import type { FastifyReply, FastifyRequest } from 'fastify';

/**
 * A body refused for its size (413) while it is still arriving is read on and discarded, bounded,
 * so that a client which writes its whole body before it reads the answer gets the 413: "lingering
 * close", as nginx does.
 *
 * Fastify answers such a body at once (its Content-Length is over the limit, or the limit was
 * reached while reading) with `connection: close`, and Node closes the socket as soon as that
 * answer is written, the client's bytes unread: the kernel answers them with a reset. The openai
 * and Anthropic SDKs and Python's urllib, still writing, saw a broken pipe instead of the 413 (about
 * half the time), took it for a network error and uploaded the body again.
 *
 * Node reads the rest of an unread body itself (`_dump`) only on a connection it keeps alive, and
 * closes one marked `close` as soon as the answer is written. So:
 * - a client that keeps its connection alive (HTTP/1.1, the SDKs) gets the 413 at once, without
 *   `connection: close`; the rest of its body is read and discarded (Node's parser keeps the
 *   connection's framing, so it serves the next request after it);
 * - a client that asked for `Connection: close` (urllib, HTTP/1.0) gets the 413 once its body has
 *   all arrived, then the connection closes with nothing left unread.
 *
 * Bounded: nothing is kept (each chunk is only counted), a Content-Encoding decoder is cut off (the
 * rest is not decoded), and past `DRAIN_FACTOR` × the body limit, or after `DRAIN_MS`, reading
 * stops and the connection is closed (a client still writing may then see a reset, as before). A
 * Content-Length already past that bound is answered at once and closed, as before.
 */

/**
 * How much of a refused body is read and discarded, as a multiple of the route's body limit: 64 MiB
 * at the default 8 MiB. A body a few times the limit (a large prompt or image, the usual mistake)
 * still gets its 413; past 8×, the bytes cost more than the courtesy.
 */
export const DRAIN_FACTOR = 8;

/** How long at most a refused body is read (nginx's `lingering_time`): a trickle cannot hold the socket. */
export const DRAIN_MS = 30_000;

export interface DrainBounds {
  /** Bytes read and discarded at most (a declared Content-Length past it is not read at all). */
  capBytes: number;
  timeoutMs: number;
}

/** Part of the request body has not arrived yet (an injected request has no `complete`: it has ended). */
export const stillArriving = (raw: IncomingMessage): boolean => !raw.complete && !raw.readableEnded;

/**
 * Reads and discards the rest of a request body. True once it has all arrived; false when it
 * passed the bounds (reading stops: the caller closes the connection) or the client went away.
 */
export function drainBody(raw: IncomingMessage, bounds: DrainBounds): Promise<boolean> {
  if (!stillArriving(raw)) return Promise.resolve(true);
  draining.add(raw);
  if (Number(raw.headers['content-length']) > bounds.capBytes || raw.destroyed) return Promise.resolve(false);
  return new Promise((resolve) => {
    let discarded = 0;
    const settle = (drained: boolean) => {
      clearTimeout(timer);
      raw.off('data', onData);
      raw.off('end', onEnd);
      raw.off('close', onClose);
      if (!drained) raw.pause();
      resolve(drained);
    };
    const onData = (chunk: Buffer | string) => {
      discarded += chunk.length;
      if (discarded > bounds.capBytes) settle(false);
    };
    const onEnd = () => settle(true);
    const onClose = () => settle(raw.complete);
    const timer = setTimeout(settle, bounds.timeoutMs, false);
    // A Content-Encoding decoder (or any reader) gets nothing more: the rest is counted, not decoded.
    raw.unpipe();
    raw.on('data', onData);
    raw.once('end', onEnd);
    raw.once('close', onClose);
    raw.resume();
  });
}

/** Requests whose unread body is being read and discarded, bounded (`drainBody`). */
const draining = new WeakSet<IncomingMessage>();

/**
 * Before any answer sent while the request's body is still arriving (a 401 or 404 answered from the
 * head alone, before the body was read): on a connection kept alive Node would discard the rest
 * itself after the answer, unbounded (its parser drops a dumped body's bytes uncounted), so a client
 * with no key could trickle a body into it for as long as it liked. Read here instead, the rest is
 * counted: past the largest body any route takes, or the request's receive timeout, the connection
 * is closed. (A body that never completes before any answer is bounded by that timeout too.)
 */
export function boundUnreadBody(
  req: FastifyRequest,
  reply: FastifyReply,
  /**
   * The largest body a route takes (a file upload's, past the JSON body limit), and how long the
   * rest may take (the request's own receive timeout): a client whose upload was refused by its
   * head (a wrong key) gets the answer, not a broken pipe that its SDK would retry.
   */
  opts: { largestBodyBytes: number; timeoutMs: number },
): void {
  const raw = req.raw;
  if (!stillArriving(raw) || draining.has(raw)) return;
  const limit = req.routeOptions.bodyLimit ?? req.server.initialConfig.bodyLimit ?? 1024 * 1024;
  const bounds = {
    capBytes: Math.max(DRAIN_FACTOR * limit, opts.largestBodyBytes),
    timeoutMs: opts.timeoutMs,
  };
  if (!keepsAlive(raw) || Number(raw.headers['content-length']) > bounds.capBytes) {
    // Nothing to read on: the connection closes once the answer is written.
    reply.header('connection', 'close');
    return;
  }
  void drainBody(raw, bounds).then((drained) => {
    if (!drained) raw.socket?.destroy();
  });
}

/** The client lets the connection live on after this request (HTTP/1.1 unless `close`; 1.0 if `keep-alive`). */
function keepsAlive(raw: IncomingMessage): boolean {
  const connection = String(raw.headers.connection ?? '').toLowerCase();
  if (raw.httpVersionMajor === 1 && raw.httpVersionMinor === 0) return /\bkeep-alive\b/.test(connection);
  return !/\bclose\b/.test(connection);
}

/**
 * Before the 413 for a body still arriving (see above). Returns a promise to wait on before
 * answering (the client asked to close), or undefined: answer now (the rest is read meanwhile, or
 * the declared length is past the bound and the connection closes after the answer).
 */
export function lingerOnTooLarge(req: FastifyRequest, reply: FastifyReply): Promise<void> | undefined {
  const raw = req.raw;
  const limit = req.routeOptions.bodyLimit ?? req.server.initialConfig.bodyLimit ?? 1024 * 1024;
  const bounds = { capBytes: DRAIN_FACTOR * limit, timeoutMs: DRAIN_MS };
  if (!stillArriving(raw) || Number(raw.headers['content-length']) > bounds.capBytes) return undefined;
  if (!keepsAlive(raw)) {
    return drainBody(raw, bounds).then(() => {
      reply.header('connection', 'close');
    });
  }
  // Kept alive: Node reads on after the answer; this counts and bounds it.
  reply.removeHeader('connection');
  void drainBody(raw, bounds).then((drained) => {
    if (!drained) raw.socket?.destroy();
  });
  return undefined;
}
