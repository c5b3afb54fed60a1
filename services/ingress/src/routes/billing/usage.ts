import { microsToUsd } from '@faregate/catalog/money';
import type { Db } from '@faregate/db/client';
import { getBalance } from '@faregate/db/accounts';
import { getUsage, type UsageGroupBy, type UsageTotals } from '@faregate/db/usage';
import type { FastifyPluginAsync } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { defaultAuth, principalOf } from '../../plugins/auth.ts';
import { money } from './reply.ts';

/** The date part names a day that exists: Date.parse rolls 2026-02-30 over to March 2nd. */
function onCalendar(s: string): boolean {
  const [y, m, d] = s.slice(0, 10).split('-').map(Number) as [number, number, number];
  const t = new Date(Date.UTC(y, m - 1, d));
  return t.getUTCFullYear() === y && t.getUTCMonth() === m - 1 && t.getUTCDate() === d;
}

const Instant = z
  .string()
  .refine(
    (s) =>
      /^\d{4}-\d{2}-\d{2}([T ][\d:.]+(Z|[+-]\d{2}:?\d{2})?)?$/.test(s) &&
      !Number.isNaN(Date.parse(s)) &&
      onCalendar(s),
    {
      message: 'an ISO 8601 date or date-time, e.g. 2026-11-01 or 2026-11-01T12:00:00Z',
    },
  )
  .transform((s) => new Date(s));

const UsageQuery = z
  .object({
    from: Instant.optional(),
    to: Instant.optional(),
    group_by: z
      .string()
      .optional()
      .transform((s) => (s ? s.split(',').map((x) => x.trim()) : []))
      .pipe(
        z
          .array(z.enum(['day', 'model', 'key']))
          .refine((g) => new Set(g).size === g.length, 'each of day, model and key at most once'),
      ),
  })
  .refine((q) => !q.from || !q.to || q.from < q.to, {
    message: "'from' must be before 'to'",
    path: ['from'],
  });

function totalsBody(t: UsageTotals) {
  return {
    calls: t.calls,
    requests: t.requests,
    input_tokens: t.inputTokens,
    cached_input_tokens: t.cachedInputTokens,
    cache_write_tokens: t.cacheWriteTokens,
    cache_write_1h_tokens: t.cacheWrite1hTokens,
    output_tokens: t.outputTokens,
    reasoning_tokens: t.reasoningTokens,
    ...money('cost', t.costMicros, microsToUsd),
  };
}

/**
 * `GET /v1/usage` and `GET /v1/balance`: the authenticated caller's own account only (the account
 * comes from the principal, never from the request). Money as USD decimal strings and µUSD.
 */
export function usageRoutes(deps: { db: Db }): FastifyPluginAsync {
  return async (app) => {
    // The caller's own account only: tenant key with the `usage` scope (a key with no scopes has all).
    defaultAuth(app, 'key');

    const typed = app.withTypeProvider<ZodTypeProvider>();
    typed.get(
      '/v1/usage',
      { config: { scope: 'usage' }, schema: { querystring: UsageQuery } },
      async (req) => {
        const p = principalOf(req);
        const q = req.query;
        const groupBy = q.group_by as UsageGroupBy[];
        const r = await getUsage(deps.db, p.accountId, { from: q.from, to: q.to, groupBy });
        return {
          object: 'usage',
          account_id: p.accountId,
          from: q.from?.toISOString() ?? null,
          to: q.to?.toISOString() ?? null,
          group_by: groupBy,
          data: r.rows.map((row) => ({
            ...(row.day !== undefined ? { day: row.day } : {}),
            ...(row.model !== undefined ? { provider: row.provider, model: row.model } : {}),
            ...(row.keyId !== undefined ? { key_id: row.keyId } : {}),
            ...totalsBody(row),
          })),
          totals: totalsBody(r.totals),
        };
      },
    );

    app.get('/v1/balance', { config: { scope: 'usage' } }, async (req) => {
      const p = principalOf(req);
      const b = await getBalance(deps.db, p.accountId);
      return {
        object: 'balance',
        account_id: p.accountId,
        ...money('balance', b.balanceMicros, microsToUsd),
        ...money('held', b.heldMicros, microsToUsd),
        ...money('available', b.availableMicros, microsToUsd),
      };
    });
  };
}
