import { randomUUID } from 'node:crypto';
import { microsToUsd, usdToMicros } from '@faregate/catalog/money';
import { MAX_CREDIT_MICROS } from '@faregate/contracts/credits';
import { GatewayError } from '@faregate/contracts/errors';
import {
  accountExists,
  createAccount,
  createApiKey,
  getBalance,
  listBalances,
  revokeApiKey,
  updateAccountLimits,
  updateApiKeySettings,
} from '@faregate/db/accounts';
import { KEY_SCOPES } from '@faregate/db/api-keys';
import type { Db } from '@faregate/db/client';
import { type CreditOutcome, findCreditOutcome } from '@faregate/db/credit-commands';
import { isDbUnavailable } from '@faregate/db/unavailable';
import type { Keys } from '@faregate/queue/keys';
import type { FastifyPluginAsync } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import type { RedisClient } from '@faregate/queue/redis';
import { z } from 'zod';
import { awaitCreditOutcome, queueCredit } from '../../credits.ts';
import { idempotencyKeyOf } from '../../idempotent-call.ts';
import { defaultAuth } from '../../plugins/auth.ts';
import { money, sendError } from './reply.ts';

/**
 * A JSON number carries 6 decimals exactly only below this: past it, the double the parser made of
 * `12345678901.123456` prints as `12345678901.123455`, and `100000000000.000001` as `100000000000`,
 * so the amount taken would not be the amount sent.
 */
const EXACT_NUMBER_USD = 1e9;

/** A positive USD amount as a decimal string (or number) with at most 6 fractional digits. */
const Usd = z
  .union([
    z.string(),
    z.number().refine((n) => Math.abs(n) < EXACT_NUMBER_USD, {
      message: `an amount of ${EXACT_NUMBER_USD.toLocaleString('en-US')} USD or more must be sent as a string (a JSON number that large does not carry 6 decimals exactly)`,
    }),
  ])
  .transform((v) => String(v).trim())
  .refine((s) => /^\d+(\.\d{1,6})?$/.test(s), {
    message: 'a decimal USD amount like "10.00" (max 6 decimals)',
  })
  .transform((s) => usdToMicros(s))
  .refine((m) => m > 0n, { message: 'must be greater than 0' });

/**
 * Text Postgres stores as sent: no NUL (it refuses it) and no lone UTF-16 surrogate (stored as U+FFFD,
 * so the name read back would differ from the one acknowledged).
 */
const Text = z.string().refine((s) => !s.includes('\0') && s.isWellFormed(), {
  message: 'contains a NUL character or a lone UTF-16 surrogate, which cannot be stored',
});

const Name = Text.trim().min(1).max(200);

/** A per-minute request or token limit (`null` removes it). */
const PerMinute = z.number().int().positive().max(1_000_000_000).nullable().optional();
/** Requests / tokens per minute of a key or an account, every ingress process together. */
const RequestLimitFields = { rpm_limit: PerMinute, tpm_limit: PerMinute };
/** How long a key's interactive requests wait out a rate-limited provider (ms; `null`: the default). */
const Patience = z.number().int().min(0).max(600_000).nullable().optional();

const CreateAccount = z.strictObject({ name: Name, ...RequestLimitFields });
const UpdateAccount = z.strictObject(RequestLimitFields);
const CreateKey = z.strictObject({
  account_id: Text.min(1).max(256),
  name: Name,
  // At least one: a key's empty list means every scope (keys made before scopes existed), so an
  // empty list asked for here would make a key that can do everything. Duplicates are dropped.
  scopes: z
    .array(z.enum(KEY_SCOPES))
    .min(1, 'give at least one scope (leave the field out for all of them)')
    .transform((s) => [...new Set(s)])
    .optional(),
  // Within what the ledger's int8 columns hold (µUSD), with room for the spend it is compared with.
  spend_limit_usd: Usd.refine((m) => m <= MAX_CREDIT_MICROS, { message: 'too large' })
    .nullable()
    .optional(),
  allowed_models: z.array(Text.trim().min(1)).min(1).nullable().optional(),
  ...RequestLimitFields,
  patience_ms: Patience,
});
const UpdateKey = z.strictObject({ ...RequestLimitFields, patience_ms: Patience });

/** The columns a limits body sets: present fields only (`null` clears, absent leaves as it is). */
function limitColumns(b: {
  rpm_limit?: number | null;
  tpm_limit?: number | null;
  patience_ms?: number | null;
}) {
  return {
    ...(b.rpm_limit !== undefined ? { rpmLimit: b.rpm_limit } : {}),
    ...(b.tpm_limit !== undefined ? { tpmLimit: b.tpm_limit } : {}),
    ...(b.patience_ms !== undefined ? { patienceMs: b.patience_ms } : {}),
  };
}
const AccountParams = z.object({ id: z.string().min(1).max(256) });
const AddCredit = z.strictObject({
  account_id: Text.min(1).max(256),
  amount_usd: Usd.refine((m) => m <= MAX_CREDIT_MICROS, { message: 'too large for one credit' }),
  reference: Text.max(500).optional(),
  idempotency_key: Text.min(1).max(200).optional(),
});
const KeyParams = z.object({ id: z.string().min(1) });

/** How long a credit waits for billing before answering 503 (the command stays queued). */
export const CREDIT_WAIT_MS = 5_000;
/** The retry hint of that 503: billing is down or far behind, not a matter of milliseconds. */
const CREDIT_RETRY_AFTER_MS = 2_000;

/**
 * Admin API under `/admin/v1` (accounts, keys, credit, balances). Every route here is `auth: 'admin'`
 * (`Authorization: Bearer <FAREGATE_ADMIN_TOKEN>`, checked by the app's auth hook; with no token
 * configured the admin API does not exist: 404 on every route). A credit is money, so the ingress
 * does not write it: it queues a credit command that billing executes once, and answers with
 * billing's recorded outcome.
 */
export function adminRoutes(deps: {
  db: Db;
  /** The credits stream billing reads. */
  redis: RedisClient;
  keys: Keys;
  /** Tells every ingress process that a key was revoked (it must stop working everywhere at once). */
  onRevoked?: (keyId: string) => Promise<void>;
  /** How long a credit waits for billing's outcome (default CREDIT_WAIT_MS). */
  creditWaitMs?: number;
}): FastifyPluginAsync {
  const creditWaitMs = deps.creditWaitMs ?? CREDIT_WAIT_MS;
  const billingAway = (key: string, cause?: unknown) =>
    new GatewayError({
      code: 'overloaded',
      message: `Billing has not applied this credit yet. It stays queued and is applied exactly once; retry with Idempotency-Key '${key}' for its result.`,
      retryable: true,
      retryAfterMs: CREDIT_RETRY_AFTER_MS,
      cause,
    });
  /** Billing's outcome of `key`: the one it recorded, else queue the command and wait for it. */
  async function credit(
    key: string,
    replay: boolean,
    cmd: { account: string; amountMicros: bigint; reference?: string },
  ): Promise<CreditOutcome> {
    try {
      // A key billing already answered gets the same answer; nothing is queued again.
      const known = replay ? await findCreditOutcome(deps.db, key) : undefined;
      if (known) return known;
      await queueCredit(deps.redis, deps.keys, { key, ...cmd });
      const o = await awaitCreditOutcome(deps.db, key, creditWaitMs);
      if (o) return o;
    } catch (err) {
      // Redis refusing the command, or Postgres not answering: nothing was decided, retry later.
      if (err instanceof z.ZodError || !(isDbUnavailable(err) || isRedisError(err))) throw err;
      throw billingAway(key, err);
    }
    throw billingAway(key);
  }

  return async (app) => {
    defaultAuth(app, 'admin');

    const typed = app.withTypeProvider<ZodTypeProvider>();
    typed.post('/admin/v1/accounts', { schema: { body: CreateAccount } }, async (req, reply) => {
      const { id } = await createAccount(deps.db, { name: req.body.name, ...limitColumns(req.body) });
      return reply.code(201).send({
        object: 'account',
        id,
        name: req.body.name,
        rpm_limit: req.body.rpm_limit ?? null,
        tpm_limit: req.body.tpm_limit ?? null,
      });
    });

    // Limits change in every ingress process within its key cache's lifetime (about a second).
    typed.patch(
      '/admin/v1/accounts/:id',
      { schema: { params: AccountParams, body: UpdateAccount } },
      async (req, reply) => {
        const a = await updateAccountLimits(deps.db, req.params.id, limitColumns(req.body));
        if (!a) return sendError(reply, 'not_found', `No account with id '${req.params.id}'.`, 'id');
        // The account as stored, as the key's PATCH answers: every limit, not only those sent.
        return { object: 'account', id: a.id, name: a.name, rpm_limit: a.rpmLimit, tpm_limit: a.tpmLimit };
      },
    );

    typed.patch(
      '/admin/v1/keys/:id',
      { schema: { params: KeyParams, body: UpdateKey } },
      async (req, reply) => {
        const k = await updateApiKeySettings(deps.db, req.params.id, limitColumns(req.body));
        if (!k) return sendError(reply, 'not_found', `No API key with id '${req.params.id}'.`, 'id');
        return {
          object: 'api_key',
          id: k.id,
          account_id: k.accountId,
          rpm_limit: k.rpmLimit,
          tpm_limit: k.tpmLimit,
          patience_ms: k.patienceMs,
        };
      },
    );

    typed.post('/admin/v1/keys', { schema: { body: CreateKey } }, async (req, reply) => {
      try {
        const k = await createApiKey(deps.db, {
          accountId: req.body.account_id,
          name: req.body.name,
          scopes: req.body.scopes,
          spendLimitMicros: req.body.spend_limit_usd ?? null,
          allowedModels: req.body.allowed_models ?? null,
          ...limitColumns(req.body),
        });
        // The only time the key is ever shown.
        return reply.code(201).send({
          object: 'api_key',
          id: k.id,
          key: k.key,
          prefix: k.prefix,
          account_id: req.body.account_id,
          name: req.body.name,
          scopes: req.body.scopes ?? [...KEY_SCOPES],
          spend_limit_usd: req.body.spend_limit_usd != null ? microsToUsd(req.body.spend_limit_usd) : null,
          allowed_models: req.body.allowed_models ?? null,
          rpm_limit: req.body.rpm_limit ?? null,
          tpm_limit: req.body.tpm_limit ?? null,
          patience_ms: req.body.patience_ms ?? null,
        });
      } catch (err) {
        if (
          (err as { code?: string }).code === '23503' ||
          (err as { cause?: { code?: string } }).cause?.code === '23503'
        ) {
          return sendError(reply, 'not_found', `No account with id '${req.body.account_id}'.`, 'account_id');
        }
        throw err;
      }
    });

    typed.post('/admin/v1/keys/:id/revoke', { schema: { params: KeyParams } }, async (req, reply) => {
      const ok = await revokeApiKey(deps.db, req.params.id);
      if (!ok) return sendError(reply, 'not_found', `No API key with id '${req.params.id}'.`, 'id');
      await deps.onRevoked?.(req.params.id);
      return { object: 'api_key', id: req.params.id, revoked: true };
    });

    typed.post('/admin/v1/credits', { schema: { body: AddCredit } }, async (req, reply) => {
      const fromHeader = idempotencyKeyOf(req);
      // Two different keys for one credit: which one the caller will retry with is unknowable.
      if (
        req.body.idempotency_key !== undefined &&
        fromHeader !== undefined &&
        fromHeader !== req.body.idempotency_key
      )
        return sendError(
          reply,
          'invalid_request_error',
          'The Idempotency-Key header and the body idempotency_key differ: give one, or the same in both.',
          'idempotency_key',
        );
      const given = req.body.idempotency_key ?? fromHeader;
      // An unknown account is refused here, before a command is queued: the key is not used up and
      // can be sent again with the right account (as any request refused before it ran).
      if (!(await accountExists(deps.db, req.body.account_id).catch(() => true)))
        return sendError(reply, 'not_found', `No account with id '${req.body.account_id}'.`, 'account_id');
      // Without a key from the caller, one of ours: the command must be recognisable when replayed.
      const key = given ?? `auto:${randomUUID()}`;
      reply.header('idempotency-key', key);
      const accountId = req.body.account_id;
      const o = await credit(key, given !== undefined, {
        account: accountId,
        amountMicros: req.body.amount_usd,
        reference: req.body.reference,
      });
      if (o.accountId !== accountId || o.amountMicros !== req.body.amount_usd) {
        return sendError(
          reply,
          'idempotency_key_reused',
          `Idempotency-Key '${key}' was used for a different credit (account or amount).`,
          'idempotency_key',
        );
      }
      if (o.status === 'refused') {
        if (o.reason === 'unknown_account')
          return sendError(reply, 'not_found', `No account with id '${accountId}'.`, 'account_id');
        if (o.reason === 'out_of_range')
          return sendError(
            reply,
            'invalid_request_error',
            'Billing refused this credit: the ledger cannot hold the sum it makes (a balance, or the total of all credits ever made, past about $9.2 trillion).',
            'amount_usd',
          );
        return sendError(reply, 'invalid_request_error', 'Billing refused this credit.');
      }
      // Credits recorded before billing kept the balance after them: today's balance instead.
      const balance = o.balanceAfterMicros ?? (await getBalance(deps.db, accountId)).balanceMicros;
      return reply.code(201).send({
        object: 'credit',
        transaction_id: o.transactionId,
        account_id: accountId,
        ...money('amount', req.body.amount_usd, microsToUsd),
        ...money('balance', balance, microsToUsd),
      });
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

/** ioredis' errors when Redis is unreachable or gave up on a command (worth a 503 and a retry). */
function isRedisError(err: unknown): boolean {
  const name = (err as { name?: unknown } | null)?.name;
  const code = (err as { code?: unknown } | null)?.code;
  return (
    name === 'MaxRetriesPerRequestError' ||
    name === 'ReplyError' ||
    name === 'AbortError' ||
    (typeof code === 'string' && ['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE'].includes(code)) ||
    (err instanceof Error && /Connection is closed|Stream isn't writeable/.test(err.message))
  );
}
