import type { FastifyInstance } from 'fastify';
import type { WebSocket } from 'ws';
import { GatewayError } from '@faregate/contracts/errors';
import { ClientOp, type ServerReplyBody } from '@faregate/contracts/ws';
import type { IngressDeps } from '../deps.ts';
import { principalOf } from '../plugins/auth.ts';
import { isObject, parseJsonText } from '../request-body.ts';
import { StreamSession } from './session.ts';
import { asGatewayError, fromZod, nackError } from '../plugins/errors.ts';

/** The ops a client can send (a nack echoes one a message named, even when the rest was refused). */
const OPS = ClientOp.options.map((o) => o.shape.op.value);

/** Close codes of protocol v1 (documented in the README). */
export const CLOSE = {
  slowConsumer: 4008,
  idle: 4000,
  badMessage: 1007,
  tooBig: 1009,
  keyRevoked: 4001,
} as const;

/** Bytes queued in the socket before a client counts as too slow (it resumes from its cursor). */
const MAX_BUFFERED = 4 * 1024 * 1024;
const HEARTBEAT_MS = 30_000;
/**
 * Messages of one socket waiting for the one before to take effect. Past this the socket stops
 * reading (TCP pushes back on the client) until half are done: a client sending faster than its
 * ops complete is held back, not buffered without bound. Frames keep flowing meanwhile.
 */
const MAX_QUEUED = 64;

/** `GET /v1/stream`: WebSocket protocol v1 (subscribe to jobs or batches with resume, submit, cancel, ping). */
export async function streamRoutes(app: FastifyInstance, deps: IngressDeps): Promise<void> {
  // A browser cannot set headers on the upgrade: it may present a single-use stream token instead.
  // `upgrade`: anything but a WebSocket upgrade from an allowed Origin is refused before auth (upgrade.ts).
  const opts = { websocket: true as const, config: { auth: 'key-or-stream-token' as const, upgrade: true } };
  app.get('/v1/stream', opts, (socket: WebSocket, req) => {
    let alive = true;
    const send = (s: string) => {
      if (socket.readyState !== socket.OPEN) return;
      if (socket.bufferedAmount > MAX_BUFFERED) {
        socket.close(CLOSE.slowConsumer, 'slow consumer: resume from your last seq');
        return;
      }
      socket.send(s);
    };
    const reply = (o: ServerReplyBody) => send(JSON.stringify({ v: 1, ...o }));
    const credential = req.credential ?? '';
    const session = new StreamSession(deps, principalOf(req), {
      send,
      reply,
      isOpen: () => socket.readyState === socket.OPEN,
      // Every operation checks the key again: a revoked key submits nothing, whenever the socket opened.
      reauth: () => deps.auth.authenticateHash(credential),
    });
    // Revoking the key ends its sockets at once (and within the auth re-check period if the
    // revocation broadcast was missed).
    const unwatch = deps.auth.watch(credential, () => socket.close(CLOSE.keyRevoked, 'API key revoked'));
    deps.metrics.websockets.inc();
    const nack = (
      op: ClientOp['op'] | 'unknown',
      id: string | undefined,
      e: unknown,
      target?: { job?: string; batch?: string },
    ) => {
      const ge = asGatewayError(e);
      if (!(e instanceof GatewayError)) req.log.error({ err: String(e) }, 'ws op failed');
      reply({ type: 'nack', op, ...(id ? { id } : {}), ...target, error: nackError(ge) });
    };

    // Messages take effect one after the other, in the order sent, each answered before the next
    // starts: a subscribe then an unsubscribe sent together leave no subscription, and every reply
    // comes in the order of its message. Followers deliver frames on their own, whatever op runs.
    let queued = 0;
    let paused = false;
    let tail: Promise<void> = Promise.resolve();
    const enqueue = (op: () => Promise<void> | void) => {
      queued++;
      if (queued >= MAX_QUEUED && !paused) {
        paused = true;
        socket.pause();
      }
      tail = tail
        .then(() => (socket.readyState === socket.OPEN ? op() : undefined))
        .catch((e: unknown) => req.log.error({ err: String(e) }, 'ws op failed'))
        .finally(() => {
          queued--;
          if (paused && queued <= MAX_QUEUED / 2) {
            paused = false;
            socket.resume();
          }
        });
    };

    // Handlers are attached synchronously so no message is lost while async work runs.
    socket.on('message', (data, isBinary) => {
      let msg: ClientOp;
      let text: string | undefined;
      let raw: unknown;
      try {
        if (isBinary)
          throw new GatewayError({ code: 'invalid_request_error', message: 'Send JSON text messages.' });
        text = data.toString();
        raw = parseJsonText(text, 'The message');
        const parsed = ClientOp.safeParse(raw);
        if (!parsed.success) throw fromZod(parsed.error);
        msg = parsed.data;
      } catch (e) {
        const ge =
          e instanceof GatewayError
            ? e
            : new GatewayError({ code: 'invalid_request_error', message: 'Messages must be JSON.' });
        // A message that fails validation is still answered as its op, with its id, when it names them
        // (JSON refused for a prototype key is read for those two strings alone).
        if (raw === undefined && e instanceof GatewayError && text !== undefined) {
          try {
            raw = JSON.parse(text);
          } catch {}
        }
        const named = (k: string) =>
          isObject(raw) && typeof raw[k] === 'string' ? (raw[k] as string) : undefined;
        const op = OPS.find((o) => o === named('op')) ?? 'unknown';
        const id = named('id');
        // In its turn, as any other message's answer.
        return enqueue(() => nack(op, id, ge));
      }
      enqueue(async () => {
        try {
          await session.handle(msg);
        } catch (e) {
          const target =
            'job' in msg && msg.job
              ? { job: msg.job }
              : 'batch' in msg && msg.batch
                ? { batch: msg.batch }
                : undefined;
          nack(msg.op, msg.id, e, target);
        }
      });
    });

    socket.on('pong', () => {
      alive = true;
    });
    const heartbeat = setInterval(() => {
      if (!alive) {
        socket.terminate();
        return;
      }
      alive = false;
      socket.ping();
    }, HEARTBEAT_MS);
    socket.on('close', () => {
      deps.metrics.websockets.dec();
      clearInterval(heartbeat);
      unwatch();
      session.close();
    });
  });
}
