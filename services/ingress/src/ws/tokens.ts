import { createHash } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { GatewayError } from '@faregate/contracts/errors';
import { newId } from '@faregate/contracts/ids';
import type { IngressDeps } from '../deps.ts';

const TTL_MS = 60_000;
const hash = (t: string) => createHash('sha256').update(t).digest('hex');

/**
 * Browsers cannot set headers on a WebSocket upgrade, and an API key in a URL ends up in logs.
 * So a backend (holding the key) asks for a short-lived, single-use token and hands it to the
 * browser, which connects to `/v1/stream?token=…`. Only the token's hash is stored.
 */
export async function streamTokenRoutes(app: FastifyInstance, deps: IngressDeps): Promise<void> {
  app.post('/v1/stream/tokens', async (req, reply) => {
    const token = newId('wst', 24);
    // The token names the key it stands for (by hash), not a copy of the tenant: redeeming it checks
    // that key again, so a token minted before its key was revoked opens nothing.
    await deps.redis.set(deps.keys.streamToken(hash(token)), credentialOf(req), 'PX', TTL_MS);
    return reply
      .code(201)
      .send({ object: 'stream_token', token, expires_at: Math.floor((Date.now() + TTL_MS) / 1000) });
  });
}

/** Redeems a stream token once (GETDEL) to the hash of its key: a leaked, used token is worthless. */
export async function redeemStreamToken(
  deps: Pick<IngressDeps, 'redis' | 'keys'>,
  token: string,
): Promise<string> {
  const raw = token.length <= 128 ? await deps.redis.getdel(deps.keys.streamToken(hash(token))) : null;
  if (!raw || !/^[0-9a-f]{64}$/.test(raw)) {
    throw new GatewayError({ code: 'invalid_api_key', message: 'Invalid or expired stream token.' });
  }
  return raw;
}

function credentialOf(req: FastifyRequest): string {
  if (!req.credential)
    throw new GatewayError({ code: 'internal_error', message: 'route has no tenant auth' });
  return req.credential;
}
