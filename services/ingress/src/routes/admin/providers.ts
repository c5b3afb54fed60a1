import type { FastifyInstance } from 'fastify';
import { circuitState, LimitOverrides, parseLimitOverrides } from '@faregate/contracts/pool-control';
import { GatewayError } from '@faregate/contracts/errors';
import type { IngressDeps } from '../../deps.ts';
import { defaultAuth } from '../../plugins/auth.ts';
import { fromZod } from '../../plugins/errors.ts';

/**
 * Provider pool operations: live pools, their circuit state, and run-time limits. Limits written
 * here override the config file and environment in every worker process within seconds, no
 * restart (`null` removes an override).
 */
export async function providerAdminRoutes(app: FastifyInstance, deps: IngressDeps): Promise<void> {
  defaultAuth(app, 'admin');
  const { keys, redis } = deps;

  app.get('/admin/v1/providers', async () => {
    const pools = await redis.smembers(keys.pools);
    const data = await Promise.all(
      pools.sort().map(async (p) => {
        const [overrides, circuit, live] = await Promise.all([
          redis.get(keys.poolLimits(p)),
          redis.hgetall(keys.circuit(p)),
          redis.exists(keys.models(p)),
        ]);
        return {
          id: p,
          live: live === 1,
          circuit: circuitState(circuit),
          limit_overrides: parseLimitOverrides(overrides),
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
    const b = LimitOverrides.safeParse(req.body);
    if (!b.success) throw fromZod(b.error);
    const key = keys.poolLimits(p);
    const next: LimitOverrides = { ...parseLimitOverrides(await redis.get(key)) };
    for (const k of ['rpm', 'tpm', 'maxInFlight', 'attempts'] as const) {
      if (b.data[k] !== undefined) next[k] = b.data[k];
    }
    await redis.set(key, JSON.stringify(next));
    return { id: p, limit_overrides: next };
  });
}
