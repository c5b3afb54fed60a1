import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import {
  circuitState,
  type LearnedLimits,
  LimitOverrides,
  parseLearnedLimits,
  parseLimitOverrides,
} from '@faregate/contracts/pool-control';
import { GatewayError } from '@faregate/contracts/errors';
import type { IngressDeps } from '../../deps.ts';
import { defaultAuth } from '../../plugins/auth.ts';
import { verbatim } from '../../plugins/errors.ts';

const ProviderParams = z.object({
  provider: z
    .string()
    .refine((p) => /^[a-z0-9-]+$/.test(p), { message: 'bad provider name', params: verbatim }),
});

/**
 * Provider pool operations: live pools, their circuit state, and run-time limits. Limits written
 * here override the config file and environment in every worker process within seconds, no
 * restart (`null` removes an override). `learned_limits` are what the pool learned from the
 * provider's rate-limit headers; they apply where no limit is configured, while `enforced`.
 */
/** The admin view of learned limits: the limits, and whether they are enforced now. */
function learnedView(l: LearnedLimits) {
  return {
    rpm: l.rpm ?? null,
    tpm: l.tpm ?? null,
    enforced: (l.hotUntil ?? 0) > Date.now(),
    enforced_until: l.hotUntil && l.hotUntil > Date.now() ? new Date(l.hotUntil).toISOString() : null,
  };
}

export async function providerAdminRoutes(app: FastifyInstance, deps: IngressDeps): Promise<void> {
  defaultAuth(app, 'admin');
  const { keys, redis } = deps;

  app.get('/admin/v1/providers', async () => {
    const pools = await redis.smembers(keys.pools);
    const data = await Promise.all(
      pools.sort().map(async (p) => {
        const [overrides, learned, circuit, live] = await Promise.all([
          redis.get(keys.poolLimits(p)),
          redis.hgetall(keys.poolLearned(p)),
          redis.hgetall(keys.circuit(p)),
          redis.exists(keys.models(p)),
        ]);
        return {
          id: p,
          live: live === 1,
          circuit: circuitState(circuit),
          limit_overrides: parseLimitOverrides(overrides),
          learned_limits: learnedView(parseLearnedLimits(learned)),
          models: deps.directory.entries.filter((e) => e.provider === p).length,
        };
      }),
    );
    return { object: 'list', data };
  });

  const typed = app.withTypeProvider<ZodTypeProvider>();
  const schema = { params: ProviderParams, body: LimitOverrides };
  typed.put('/admin/v1/providers/:provider/limits', { schema }, async (req) => {
    const p = req.params.provider;
    // A pool that registered, or one this deployment expects (not started yet): a typo sets nothing.
    if (!deps.config.EXPECTED_POOLS.includes(p) && (await redis.sismember(keys.pools, p)) !== 1) {
      throw new GatewayError({
        code: 'not_found',
        message: `No provider pool '${p}' has registered, and EXPECTED_POOLS does not name it: GET /admin/v1/providers lists the pools.`,
        param: 'provider',
      });
    }
    const key = keys.poolLimits(p);
    const next: LimitOverrides = { ...parseLimitOverrides(await redis.get(key)) };
    for (const k of ['rpm', 'tpm', 'maxInFlight', 'attempts'] as const) {
      if (req.body[k] !== undefined) next[k] = req.body[k];
    }
    await redis.set(key, JSON.stringify(next));
    return { id: p, limit_overrides: next };
  });
}
