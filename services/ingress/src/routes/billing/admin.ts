import { microsToUsd, usdToMicros } from '@faregate/catalog/money';
import {
  addCredit,
  createAccount,
  createApiKey,
  listBalances,
  revokeApiKey,
  UnknownAccountError,
} from '@faregate/db/accounts';
import { KEY_SCOPES } from '@faregate/db/api-keys';
import type { Db } from '@faregate/db/client';
import type { FastifyPluginAsync } from 'fastify';
import { z } from 'zod';
import { defaultAuth } from '../../plugins/auth.ts';
import { money, sendError, sendZodError } from './reply.ts';

/** A positive USD amount as a decimal string (or number) with at most 6 fractional digits. */
const Usd = z
  .union([z.string(), z.number()])
  .transform((v) => String(v).trim())
  .refine((s) => /^\d+(\.\d{1,6})?$/.test(s), {
    message: 'a decimal USD amount like "10.00" (max 6 decimals)',
  })
  .transform((s) => usdToMicros(s))
  .refine((m) => m > 0n, { message: 'must be greater than 0' });

const Name = z.string().trim().min(1).max(200);

const CreateAccount = z.strictObject({ name: Name });
const CreateKey = z.strictObject({
  account_id: z.string().min(1),
  name: Name,
  scopes: z.array(z.enum(KEY_SCOPES)).optional(),
  spend_limit_usd: Usd.nullable().optional(),
  allowed_models: z.array(z.string().min(1)).min(1).nullable().optional(),
});
const AddCredit = z.strictObject({
  account_id: z.string().min(1),
  amount_usd: Usd,
  reference: z.string().max(500).optional(),
  idempotency_key: z.string().min(1).max(200).optional(),
});
const KeyParams = z.object({ id: z.string().min(1) });

/**
 * Admin API under `/admin/v1` (accounts, keys, credit, balances). Every route here is `auth: 'admin'`
 * (`Authorization: Bearer <FAREGATE_ADMIN_TOKEN>`, checked by the app's auth hook; with no token
 * configured the admin API does not exist: 404 on every route).
 */
export function adminRoutes(deps: {
  db: Db;
  /** Tells every ingress process that a key was revoked (it must stop working everywhere at once). */
  onRevoked?: (keyId: string) => Promise<void>;
}): FastifyPluginAsync {
  return async (app) => {
    defaultAuth(app, 'admin');

    app.post('/admin/v1/accounts', async (req, reply) => {
      const b = CreateAccount.safeParse(req.body);
      if (!b.success) return sendZodError(reply, b.error);
      const { id } = await createAccount(deps.db, { name: b.data.name });
      return reply.code(201).send({ object: 'account', id, name: b.data.name });
    });

    app.post('/admin/v1/keys', async (req, reply) => {
      const b = CreateKey.safeParse(req.body);
      if (!b.success) return sendZodError(reply, b.error);
      try {
        const k = await createApiKey(deps.db, {
          accountId: b.data.account_id,
          name: b.data.name,
          scopes: b.data.scopes,
          spendLimitMicros: b.data.spend_limit_usd ?? null,
          allowedModels: b.data.allowed_models ?? null,
        });
        // The only time the key is ever shown.
        return reply.code(201).send({
          object: 'api_key',
          id: k.id,
          key: k.key,
          prefix: k.prefix,
          account_id: b.data.account_id,
          name: b.data.name,
          scopes: b.data.scopes ?? [...KEY_SCOPES],
          spend_limit_usd: b.data.spend_limit_usd != null ? microsToUsd(b.data.spend_limit_usd) : null,
          allowed_models: b.data.allowed_models ?? null,
        });
      } catch (err) {
        if (
          (err as { code?: string }).code === '23503' ||
          (err as { cause?: { code?: string } }).cause?.code === '23503'
        ) {
          return sendError(reply, 'not_found', `No account with id '${b.data.account_id}'.`, 'account_id');
        }
        throw err;
      }
    });

    app.post('/admin/v1/keys/:id/revoke', async (req, reply) => {
      const p = KeyParams.safeParse(req.params);
      if (!p.success) return sendZodError(reply, p.error);
      const ok = await revokeApiKey(deps.db, p.data.id);
      if (!ok) return sendError(reply, 'not_found', `No API key with id '${p.data.id}'.`, 'id');
      await deps.onRevoked?.(p.data.id);
      return { object: 'api_key', id: p.data.id, revoked: true };
    });

    app.post('/admin/v1/credits', async (req, reply) => {
      const b = AddCredit.safeParse(req.body);
      if (!b.success) return sendZodError(reply, b.error);
      const header = req.headers['idempotency-key'];
      const idempotencyKey =
        b.data.idempotency_key ?? (typeof header === 'string' && header ? header : undefined);
      try {
        const r = await addCredit(deps.db, {
          accountId: b.data.account_id,
          amountMicros: b.data.amount_usd,
          reference: b.data.reference,
          idempotencyKey,
        });
        return reply.code(201).send({
          object: 'credit',
          transaction_id: r.transactionId,
          account_id: b.data.account_id,
          ...money('amount', b.data.amount_usd, microsToUsd),
          ...money('balance', r.balanceMicros, microsToUsd),
        });
      } catch (err) {
        if (err instanceof UnknownAccountError) {
          return sendError(reply, 'not_found', `No account with id '${b.data.account_id}'.`, 'account_id');
        }
        throw err;
      }
    });

    app.get('/admin/v1/balances', async () => {
      const rows = await listBalances(deps.db);
      return {
        object: 'list',
        data: rows.map((r) => ({
          account_id: r.accountId,
          name: r.name,
          ...money('balance', r.balanceMicros, microsToUsd),
          ...money('held', r.heldMicros, microsToUsd),
          ...money('available', r.availableMicros, microsToUsd),
        })),
      };
    });
  };
}
