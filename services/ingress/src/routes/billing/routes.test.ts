import { addCredit, createAccount, createApiKey } from '@faregate/db/accounts';
import { findApiKey, hashApiKey } from '@faregate/db/api-keys';
import { createDb, type Db } from '@faregate/db/client';
import { placeHold } from '@faregate/db/holds';
import { runMigrations } from '@faregate/db/migrate';
import { usageEvents } from '@faregate/db/schema/usage-events';
import { makeKeys } from '@faregate/queue/keys';
import { createRedis } from '@faregate/queue/redis';
import Fastify, { type FastifyInstance } from 'fastify';
import type { Redis } from 'ioredis';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshDatabase, testRedis } from '../../../../../packages/testing/src/env.ts';
// Billing in-process (a test may; the services never import each other): it executes the credits.
import { type Billing, createBilling } from '../../../../billing/src/billing.ts';
import { BillingConfig } from '../../../../billing/src/config.ts';
import { type BillingDeps, createBillingDeps } from '../../../../billing/src/create-deps.ts';
import { adminRoutes } from './admin.ts';
import { GatewayError } from '@faregate/contracts/errors';
import { type Principal, registerAuth } from '../../plugins/auth.ts';
import { registerErrorHandling, registerZodSchemas } from '../../plugins/errors.ts';
import { usageRoutes } from './usage.ts';

const TOKEN = 'admin-token-0123456789abcdef';
let db: Db;
let close: () => Promise<void>;
let drop: () => Promise<void>;
let app: FastifyInstance;
let disabled: FastifyInstance;
let redis: Redis;
let keys: ReturnType<typeof makeKeys>;
let billingDeps: BillingDeps;
let billing: Billing;
let alice: { account: string; key: string };
let bob: { account: string; key: string };

const testKeys = new Map<string, Principal>();

/**
 * A bare app with the ingress's own error handling and auth hook. The tenant key check trusts the
 * `x-test-account`/`x-test-key`/`x-test-scopes` headers: a first hook turns them into a bearer key
 * that the key check knows.
 */
async function build(adminToken: string | undefined): Promise<FastifyInstance> {
  const a = Fastify();
  registerErrorHandling(a);
  registerZodSchemas(a);
  a.addHook('onRequest', async (req) => {
    const account = req.headers['x-test-account'];
    if (typeof account === 'string' && !req.headers.authorization) {
      const scopes = req.headers['x-test-scopes'];
      const key = `test-${account}-${String(req.headers['x-test-key'])}-${String(scopes)}`;
      testKeys.set(hashApiKey(key), {
        accountId: account,
        keyId: String(req.headers['x-test-key']),
        scopes: typeof scopes === 'string' ? scopes.split(',') : [],
        allowedModels: null,
      });
      req.headers.authorization = `Bearer ${key}`;
    }
  });
  registerAuth(a, {
    adminToken,
    authenticateHash: async (hash) => {
      const p = testKeys.get(hash);
      if (!p) throw new GatewayError({ code: 'invalid_api_key', message: 'Incorrect API key provided.' });
      return p;
    },
  });
  await a.register(usageRoutes({ db }));
  await a.register(adminRoutes({ db, redis, keys }));
  await a.ready();
  return a;
}

function event(o: { id: string; account: string; key: string; model: string; cost: bigint; at: string }) {
  return {
    id: o.id,
    accountId: o.account,
    keyId: o.key,
    requestId: o.id.split('.')[0]!,
    provider: 'openai',
    model: o.model,
    hop: 0,
    attempt: 0,
    inputTokens: 100,
    cachedInputTokens: 10,
    cacheWriteTokens: 0,
    outputTokens: 50,
    reasoningTokens: 5,
    costMicros: o.cost,
    outcome: 'success' as const,
    final: true,
    occurredAt: new Date(o.at),
  };
}

beforeAll(async () => {
  const fresh = await freshDatabase();
  drop = fresh.drop;
  await runMigrations(fresh.url);
  ({ db, close } = createDb(fresh.url));
  const r = testRedis();
  keys = makeKeys(r.prefix);
  redis = createRedis(r.url);
  billingDeps = createBillingDeps(
    BillingConfig.parse({
      DATABASE_URL: fresh.url,
      REDIS_URL: r.url,
      REDIS_PREFIX: r.prefix,
      BILLING_BATCH_MS: '10',
    }),
    pino({ level: 'silent' }),
  );
  billing = createBilling(billingDeps);
  await billing.start();
  for (const who of ['alice', 'bob'] as const) {
    const { id } = await createAccount(db, { name: who });
    const k = await createApiKey(db, { accountId: id, name: `${who}-key` });
    if (who === 'alice') alice = { account: id, key: k.id };
    else bob = { account: id, key: k.id };
  }
  await addCredit(db, { accountId: alice.account, amountMicros: 5_000_000n });
  await db.insert(usageEvents).values([
    event({ id: 'r1.h0.a0', ...alice, model: 'gpt-4o', cost: 1_500n, at: '2026-11-01T10:00:00Z' }),
    event({ id: 'r2.h0.a0', ...alice, model: 'gpt-4o-mini', cost: 250n, at: '2026-11-01T11:00:00Z' }),
    event({ id: 'r3.h0.a0', ...alice, model: 'gpt-4o', cost: 1_000n, at: '2026-11-02T09:00:00Z' }),
    event({ id: 'b1.h0.a0', ...bob, model: 'gpt-4o', cost: 999_999n, at: '2026-11-01T10:00:00Z' }),
    // A request that made no call that produced tokens (a batch line that expired waiting): its
    // final event releases its hold; it is neither a call nor a request in the usage.
    {
      ...event({ id: 'r4.h0.a0', ...alice, model: 'gpt-4o', cost: 0n, at: '2026-11-02T10:00:00Z' }),
      inputTokens: 0,
      cachedInputTokens: 0,
      outputTokens: 0,
      reasoningTokens: 0,
      outcome: 'cancelled' as const,
    },
  ]);
  app = await build(TOKEN);
  disabled = await build(undefined);
});
afterAll(async () => {
  await app?.close();
  await disabled?.close();
  await billing?.stop();
  await billingDeps?.close();
  if (redis) {
    const found = await redis.keys(`${keys.prefix}:*`);
    if (found.length > 0) await redis.del(...found);
    redis.disconnect();
  }
  await close?.();
  await drop?.();
});

const as = (who: { account: string; key: string }) => ({
  'x-test-account': who.account,
  'x-test-key': who.key,
});
const admin = { authorization: `Bearer ${TOKEN}` };

describe('GET /v1/usage', () => {
  it('returns only the caller’s usage, grouped, with exact money', async () => {
    const r = await app.inject({ url: '/v1/usage?group_by=day,model', headers: as(alice) });
    expect(r.statusCode).toBe(200);
    const body = r.json();
    expect(body.totals).toMatchObject({
      calls: 3,
      requests: 3,
      cost_micros: '2750',
      cost_usd: '0.002750',
      input_tokens: 300,
    });
    expect(body.data).toEqual([
      expect.objectContaining({
        day: '2026-11-01',
        provider: 'openai',
        model: 'gpt-4o',
        cost_micros: '1500',
      }),
      expect.objectContaining({
        day: '2026-11-01',
        provider: 'openai',
        model: 'gpt-4o-mini',
        cost_micros: '250',
      }),
      expect.objectContaining({
        day: '2026-11-02',
        provider: 'openai',
        model: 'gpt-4o',
        cost_micros: '1000',
      }),
    ]);
    expect(JSON.stringify(body)).not.toContain(bob.account);
    expect(JSON.stringify(body)).not.toContain('999999');
  });

  it('filters by time range and groups by key', async () => {
    const r = await app.inject({
      url: '/v1/usage?from=2026-11-02&to=2026-11-03&group_by=key',
      headers: as(alice),
    });
    expect(r.json().data).toEqual([
      expect.objectContaining({ key_id: alice.key, cost_micros: '1000', calls: 1 }),
    ]);
  });

  it('never shows another tenant’s usage, even grouped by key', async () => {
    const r = await app.inject({ url: '/v1/usage?group_by=key', headers: as(bob) });
    expect(r.json().data).toEqual([expect.objectContaining({ key_id: bob.key, cost_micros: '999999' })]);
    expect(r.json().totals.calls).toBe(1);
  });

  it('rejects bad parameters and unauthenticated or unscoped callers', async () => {
    const bad = await app.inject({ url: '/v1/usage?group_by=weekday', headers: as(alice) });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().error).toMatchObject({ type: 'invalid_request_error', param: 'group_by.0' });
    const twice = await app.inject({ url: '/v1/usage?group_by=day,day', headers: as(alice) });
    expect(twice.statusCode).toBe(400);
    expect(twice.json().error).toMatchObject({ param: 'group_by' });
    const badDate = await app.inject({ url: '/v1/usage?from=yesterday', headers: as(alice) });
    expect(badDate.statusCode).toBe(400);
    // A day that does not exist is refused, not rolled over (Date.parse reads it as March 2nd).
    for (const from of ['2026-02-30', '2026-13-01', '2026-04-31T00:00:00Z']) {
      const r = await app.inject({ url: `/v1/usage?from=${from}`, headers: as(alice) });
      expect(r.statusCode, from).toBe(400);
      expect(r.json().error).toMatchObject({ param: 'from' });
    }
    const leap = await app.inject({ url: '/v1/usage?from=2028-02-29', headers: as(alice) });
    expect(leap.statusCode).toBe(200);
    const anon = await app.inject({ url: '/v1/usage' });
    expect(anon.statusCode).toBe(401);
    expect(anon.json().error.code).toBe('invalid_api_key');
    const scoped = await app.inject({
      url: '/v1/balance',
      headers: { ...as(alice), 'x-test-scopes': 'chat' },
    });
    expect(scoped.statusCode).toBe(403);
  });
});

describe('GET /v1/balance', () => {
  it('shows balance, holds and what is available', async () => {
    await placeHold(db, {
      requestId: 'req_bal',
      accountId: alice.account,
      keyId: alice.key,
      amountMicros: 1_000_000n,
      expiresAt: new Date(Date.now() + 60_000),
    });
    const r = await app.inject({ url: '/v1/balance', headers: as(alice) });
    expect(r.json()).toEqual({
      object: 'balance',
      account_id: alice.account,
      balance_usd: '5.000000',
      balance_micros: '5000000',
      held_usd: '1.000000',
      held_micros: '1000000',
      available_usd: '4.000000',
      available_micros: '4000000',
    });
  });
});

describe('admin API', () => {
  it('is absent when no admin token is configured', async () => {
    const r = await disabled.inject({ method: 'GET', url: '/admin/v1/balances', headers: admin });
    expect(r.statusCode).toBe(404);
    const c = await disabled.inject({
      method: 'POST',
      url: '/admin/v1/accounts',
      headers: admin,
      payload: { name: 'x' },
    });
    expect(c.statusCode).toBe(404);
  });

  it('refuses a missing or wrong token, and tenant keys', async () => {
    for (const headers of [
      {},
      { authorization: 'Bearer nope' },
      { authorization: `Bearer ${TOKEN}x` },
      as(alice),
    ]) {
      const r = await app.inject({ method: 'GET', url: '/admin/v1/balances', headers });
      expect(r.statusCode).toBe(401);
      expect(r.json().error).toMatchObject({ code: 'invalid_api_key' });
    }
  });

  it('creates an account and a key (shown once), credits it, lists balances, revokes the key', async () => {
    const acct = await app.inject({
      method: 'POST',
      url: '/admin/v1/accounts',
      headers: admin,
      payload: { name: 'carol' },
    });
    expect(acct.statusCode).toBe(201);
    const accountId = acct.json().id as string;
    expect(accountId).toMatch(/^acct_/);

    const key = await app.inject({
      method: 'POST',
      url: '/admin/v1/keys',
      headers: admin,
      payload: {
        account_id: accountId,
        name: 'ci',
        spend_limit_usd: '12.5',
        allowed_models: ['gpt-4o-mini'],
        scopes: ['chat', 'usage', 'chat'],
      },
    });
    expect(key.statusCode).toBe(201);
    const k = key.json();
    expect(k).toMatchObject({
      scopes: ['chat', 'usage'],
      account_id: accountId,
      spend_limit_usd: '12.500000',
      allowed_models: ['gpt-4o-mini'],
    });
    const rec = await findApiKey(db, hashApiKey(k.key));
    expect(rec).toMatchObject({ id: k.id, accountId, spendLimitMicros: 12_500_000n, revoked: false });
    // A limit past what the ledger holds is refused, naming the field.
    const huge = await app.inject({
      method: 'POST',
      url: '/admin/v1/keys',
      headers: admin,
      payload: { account_id: accountId, name: 'huge', spend_limit_usd: '99999999999999999999' },
    });
    expect(huge.statusCode).toBe(400);
    expect(huge.json().error).toMatchObject({ param: 'spend_limit_usd' });

    const credit = () =>
      app.inject({
        method: 'POST',
        url: '/admin/v1/credits',
        headers: { ...admin, 'idempotency-key': 'carol-1' },
        payload: { account_id: accountId, amount_usd: '20.10' },
      });
    const c1 = await credit();
    const c2 = await credit();
    expect(c1.statusCode).toBe(201);
    expect(c2.json().transaction_id).toBe(c1.json().transaction_id);
    expect(c2.json().balance_micros).toBe('20100000');

    const list = await app.inject({ method: 'GET', url: '/admin/v1/balances', headers: admin });
    expect(list.json().data).toContainEqual(
      expect.objectContaining({ account_id: accountId, name: 'carol', balance_usd: '20.100000' }),
    );

    const revoke = await app.inject({ method: 'POST', url: `/admin/v1/keys/${k.id}/revoke`, headers: admin });
    expect(revoke.json()).toEqual({ object: 'api_key', id: k.id, revoked: true });
    expect((await findApiKey(db, hashApiKey(k.key)))?.revoked).toBe(true);
  });

  it('validates bodies and reports unknown ids as 404', async () => {
    const cases = [
      { url: '/admin/v1/accounts', payload: {} },
      { url: '/admin/v1/accounts', payload: { name: 'x', extra: 1 } },
      { url: '/admin/v1/credits', payload: { account_id: alice.account, amount_usd: '1.0000001' } },
      { url: '/admin/v1/credits', payload: { account_id: alice.account, amount_usd: '-5' } },
      { url: '/admin/v1/credits', payload: { account_id: alice.account, amount_usd: '0' } },
    ];
    for (const c of cases) {
      const r = await app.inject({ method: 'POST', headers: admin, ...c });
      expect(r.statusCode, JSON.stringify(c.payload)).toBe(400);
      expect(r.json().error.type).toBe('invalid_request_error');
    }
    const noAcct = await app.inject({
      method: 'POST',
      url: '/admin/v1/credits',
      headers: admin,
      payload: { account_id: 'acct_missing', amount_usd: '1' },
    });
    expect(noAcct.statusCode).toBe(404);
    const noKeyAcct = await app.inject({
      method: 'POST',
      url: '/admin/v1/keys',
      headers: admin,
      payload: { account_id: 'acct_missing', name: 'x' },
    });
    expect(noKeyAcct.statusCode).toBe(404);
    // An empty scope list is refused: a key's empty list means every scope, not none.
    const noScopes = await app.inject({
      method: 'POST',
      url: '/admin/v1/keys',
      headers: admin,
      payload: { account_id: 'acct_missing', name: 'x', scopes: [] },
    });
    expect(noScopes.statusCode).toBe(400);
    expect(noScopes.json().error).toMatchObject({ type: 'invalid_request_error', param: 'scopes' });
    const noKey = await app.inject({
      method: 'POST',
      url: '/admin/v1/keys/key_missing/revoke',
      headers: admin,
    });
    expect(noKey.statusCode).toBe(404);
    const badJson = await app.inject({
      method: 'POST',
      url: '/admin/v1/accounts',
      headers: { ...admin, 'content-type': 'application/json' },
      payload: '{nope',
    });
    expect(badJson.statusCode).toBe(400);
    expect(badJson.json().error.type).toBe('invalid_request_error');
  });
});
