import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { GatewayError } from '@faregate/contracts/errors';
import type { IngressDeps } from '../../deps.ts';
import { defaultAuth } from '../../plugins/auth.ts';
import { fromZod } from '../../plugins/errors.ts';

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
  defaultAuth(app, 'admin');
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
