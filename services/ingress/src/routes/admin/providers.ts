import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { GatewayError } from '@faregate/contracts/errors';
import type { IngressDeps } from '../../deps.ts';
import { fromZod } from '../../plugins/errors.ts';

const digest = (s: string) => createHash('sha256').update(s).digest();

/** Constant-time check of `Authorization: Bearer <FAREGATE_ADMIN_TOKEN>`; no token configured: the route does not exist. */
export function adminGuard(adminToken: string | undefined) {
  const expected = adminToken ? digest(adminToken) : undefined;
  return async (req: FastifyRequest) => {
    if (!expected)
      throw new GatewayError({
        code: 'not_found',
        message: `Unknown request URL: ${req.method} ${req.url.split('?')[0]}.`,
      });
    const m = /^Bearer\s+(.+)$/i.exec(req.headers.authorization?.trim() ?? '');
    if (!m?.[1] || !timingSafeEqual(digest(m[1].trim()), expected)) {
      throw new GatewayError({ code: 'invalid_api_key', message: 'Invalid admin token.' });
    }
  };
}

const limit = z.number().int().positive().nullable().optional();
const Limits = z.strictObject({
  rpm: limit,
  tpm: limit,
  maxInFlight: limit,
  attempts: z.number().int().min(1).max(10).nullable().optional(),
});

/**
 * Provider pool operations: live pools, their circuit state, and run-time limits. Limits written
 * here override the config file and environment in every worker process within seconds, no
 * restart (`null` removes an override).
 */
export async function providerAdminRoutes(app: FastifyInstance, deps: IngressDeps): Promise<void> {
  app.addHook('onRequest', adminGuard(deps.config.FAREGATE_ADMIN_TOKEN));
  const { keys, redis } = deps;

  app.get('/admin/v1/providers', async () => {
    const pools = await redis.smembers(keys.k('pools'));
    const data = await Promise.all(
      pools.sort().map(async (p) => {
        const [overrides, circuit, live] = await Promise.all([
          redis.get(keys.k('limits', p)),
          redis.hgetall(keys.k('circuit', p)),
          redis.exists(keys.models(p)),
        ]);
        return {
          id: p,
          live: live === 1,
          circuit:
            circuit.state === 'open' || circuit.state === 'half'
              ? circuit.state === 'half'
                ? 'half-open'
                : 'open'
              : 'closed',
          limit_overrides: overrides ? JSON.parse(overrides) : {},
          models: deps.directory.entries.filter((e) => e.provider === p).length,
        };
      }),
    );
    return { object: 'list', data };
  });

  app.put<{ Params: { provider: string } }>('/admin/v1/providers/:provider/limits', async (req) => {
    const p = req.params.provider;
    if (!/^[a-z0-9-]+$/.test(p))
      throw new GatewayError({
        code: 'invalid_request_error',
        message: 'bad provider name',
        param: 'provider',
      });
    const b = Limits.safeParse(req.body);
    if (!b.success) throw fromZod(b.error);
    const key = keys.k('limits', p);
    const cur = JSON.parse((await redis.get(key)) ?? '{}') as Record<string, number | null>;
    const next: Record<string, number | null> = { ...cur };
    for (const [k, v] of Object.entries(b.data)) if (v !== undefined) next[k] = v;
    await redis.set(key, JSON.stringify(next));
    return { id: p, limit_overrides: next };
  });
}
