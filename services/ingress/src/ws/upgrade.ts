import type { FastifyInstance, FastifyRequest } from 'fastify';
import { GatewayError } from '@faregate/contracts/errors';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** A WebSocket-only route (`GET /v1/stream`): refused unless the request is an upgrade allowed here. */
    upgrade?: boolean;
  }
}

/** The Origins `WS_ALLOWED_ORIGINS` lists (comma-separated); none: any Origin. */
export function allowedOrigins(setting: string): string[] {
  return setting
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}

/** CORS does not protect WebSockets: a browser's Origin must be listed (cross-site hijacking). */
export function originAllowed(allowed: readonly string[], origin: string | undefined): boolean {
  return allowed.length === 0 || !origin || allowed.includes(origin);
}

const hasToken = (header: string | undefined, token: string) =>
  (header ?? '').split(',').some((t) => t.trim().toLowerCase() === token);

/**
 * Refuses a request to a WebSocket-only route that will not become a socket: not an upgrade (426,
 * with `Upgrade: websocket`), not a handshake `ws` would accept (400), or from an Origin not allowed
 * (403). Each in OpenAI's error shape. Run before authentication, so such a request never redeems a
 * single-use stream token (a link prefetcher, a cross-site page).
 */
export function registerUpgradeChecks(app: FastifyInstance, origins: readonly string[]): void {
  app.addHook('onRequest', async (req, reply) => {
    if (req.is404 || !req.routeOptions.config?.upgrade) return;
    const { upgrade, connection } = req.headers;
    if (!hasToken(upgrade, 'websocket') || !hasToken(connection, 'upgrade')) {
      reply.header('upgrade', 'websocket');
      throw Object.assign(
        new Error(
          `${req.url.split('?')[0]} is a WebSocket endpoint: connect with a WebSocket client (Upgrade: websocket).`,
        ),
        { statusCode: 426 },
      );
    }
    // What `ws` checks before it upgrades: a request it would refuse must not use up a token either.
    const key = req.headers['sec-websocket-key'];
    const version = req.headers['sec-websocket-version'];
    if (req.method !== 'GET' || !isKey(key) || (version !== '8' && version !== '13')) {
      throw new GatewayError({
        code: 'invalid_request_error',
        message: 'Not a valid WebSocket handshake (Sec-WebSocket-Key, Sec-WebSocket-Version 13).',
      });
    }
    if (!originAllowed(origins, originOf(req))) {
      throw new GatewayError({
        code: 'permission_denied',
        message: `Origin not allowed: ${originOf(req)} is not in WS_ALLOWED_ORIGINS.`,
      });
    }
  });
  // An upgrade refused by any hook (these checks, auth, a 404) is answered on the raw socket, which
  // nothing closes afterwards: @fastify/websocket destroys it only when its own onRequest hook ran
  // (`req.ws`), and a hook that throws before it keeps it from running. The socket then stayed open
  // for good (CLOSE-WAIT once the client left): a file descriptor per refused upgrade, for anyone
  // without a key, and a drain at shutdown that could never end.
  app.addHook('onResponse', (req, _reply, done) => {
    const upgrade = (req.raw as { upgrade?: boolean }).upgrade === true;
    if (upgrade && (req as { ws?: boolean }).ws !== true) req.raw.socket.destroy();
    done();
  });
}

const isKey = (k: unknown): boolean => typeof k === 'string' && /^[+/0-9A-Za-z]{22}==$/.test(k.trim());

/** The Origin `ws` hands `verifyClient` (version 8 clients send it as `Sec-WebSocket-Origin`). */
function originOf(req: FastifyRequest): string | undefined {
  const o = req.headers[req.headers['sec-websocket-version'] === '8' ? 'sec-websocket-origin' : 'origin'];
  return typeof o === 'string' ? o : undefined;
}
