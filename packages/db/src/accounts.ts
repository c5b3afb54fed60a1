import { newId } from '@faregate/contracts/ids';
import { and, eq, sql } from 'drizzle-orm';
import { displayPrefix, generateApiKey, hashApiKey, KEY_SCOPES, lockKeyFor } from './api-keys.ts';
import type { Db } from './client.ts';
import { accounts } from './schema/accounts.ts';
import { apiKeys } from './schema/api-keys.ts';
import { journalEntries } from './schema/journal-entries.ts';
import { journalTransactions } from './schema/journal-transactions.ts';
import { FUNDING_LEDGER, ledgerAccounts, tenantLedger } from './schema/ledger-accounts.ts';

export type Tx = Parameters<Parameters<Db['transaction']>[0]>[0];
type Conn = Db | Tx;

async function insertAccount(db: Conn, id: string, name: string, limits: RequestLimits = {}): Promise<void> {
  await db.insert(accounts).values({ id, name, ...limits });
  await db.insert(ledgerAccounts).values({ id: tenantLedger(id), kind: 'tenant', accountId: id });
}

/** Requests / tokens per minute of a key or an account (`null` removes one; absent leaves it). */
export interface RequestLimits {
  rpmLimit?: number | null;
  tpmLimit?: number | null;
}

/** A new tenant with its (zero) balance. */
/** Whether an account with this id exists. */
export async function accountExists(db: Db, accountId: string): Promise<boolean> {
  const rows = await db.select({ id: accounts.id }).from(accounts).where(eq(accounts.id, accountId)).limit(1);
  return rows.length > 0;
}

export async function createAccount(db: Db, opts: { name: string } & RequestLimits): Promise<{ id: string }> {
  const id = newId('acct');
  const { name, ...limits } = opts;
  await db.transaction((tx) => insertAccount(tx, id, name, limits));
  return { id };
}

/** Changes an account's request limits; the account as it is now, or undefined when no such account. */
export async function updateAccountLimits(
  db: Db,
  accountId: string,
  limits: RequestLimits,
): Promise<{ id: string; name: string; rpmLimit: number | null; tpmLimit: number | null } | undefined> {
  const cols = {
    id: accounts.id,
    name: accounts.name,
    rpmLimit: accounts.rpmLimit,
    tpmLimit: accounts.tpmLimit,
  };
  const rows =
    Object.keys(limits).length === 0
      ? await db.select(cols).from(accounts).where(eq(accounts.id, accountId))
      : await db.update(accounts).set(limits).where(eq(accounts.id, accountId)).returning(cols);
  return rows[0];
}

/** What an admin may change on a key after it was created. */
export interface KeySettings extends RequestLimits {
  patienceMs?: number | null;
}

/** Changes a key's request limits and patience; the key's row as it is now, or undefined when no such key. */
export async function updateApiKeySettings(db: Db, keyId: string, settings: KeySettings) {
  const cols = {
    id: apiKeys.id,
    accountId: apiKeys.accountId,
    rpmLimit: apiKeys.rpmLimit,
    tpmLimit: apiKeys.tpmLimit,
    patienceMs: apiKeys.patienceMs,
  };
  const rows =
    Object.keys(settings).length === 0
      ? await db.select(cols).from(apiKeys).where(eq(apiKeys.id, keyId))
      : await db.update(apiKeys).set(settings).where(eq(apiKeys.id, keyId)).returning(cols);
  return rows[0];
}

export interface CreateApiKeyOpts {
  accountId: string;
  name: string;
  scopes?: string[];
  spendLimitMicros?: bigint | null;
  allowedModels?: string[] | null;
  rpmLimit?: number | null;
  tpmLimit?: number | null;
  patienceMs?: number | null;
}

async function insertApiKey(db: Conn, opts: CreateApiKeyOpts, key: string) {
  const id = newId('key');
  const prefix = displayPrefix(key);
  await db.insert(apiKeys).values({
    id,
    accountId: opts.accountId,
    hash: hashApiKey(key),
    prefix,
    name: opts.name,
    scopes: opts.scopes ?? [...KEY_SCOPES],
    spendLimitMicros: opts.spendLimitMicros ?? null,
    allowedModels: opts.allowedModels ?? null,
    rpmLimit: opts.rpmLimit ?? null,
    tpmLimit: opts.tpmLimit ?? null,
    patienceMs: opts.patienceMs ?? null,
  });
  return { id, key, prefix };
}

/** Creates a key for an existing account. The plaintext key is returned once and never stored. */
export async function createApiKey(
  db: Db,
  opts: CreateApiKeyOpts,
): Promise<{ id: string; key: string; prefix: string }> {
  return insertApiKey(db, opts, generateApiKey());
}

/** Revokes a key; false when no such key. Idempotent. */
export async function revokeApiKey(db: Db, keyId: string, accountId?: string): Promise<boolean> {
  const rows = await db
    .update(apiKeys)
    .set({ revoked: true, revokedAt: sql`coalesce(${apiKeys.revokedAt}, now())` })
    .where(
      accountId === undefined
        ? eq(apiKeys.id, keyId)
        : and(eq(apiKeys.id, keyId), eq(apiKeys.accountId, accountId)),
    )
    .returning({ id: apiKeys.id });
  return rows.length > 0;
}

export class UnknownAccountError extends Error {
  constructor(accountId: string) {
    super(`unknown account: ${accountId}`);
    this.name = 'UnknownAccountError';
  }
}

/**
 * Posts a credit inside the caller's transaction (billing's credit command; `addCredit`). Only
 * billing calls this in production: the ingress queues a credit command instead (DESIGN: only
 * billing writes money).
 */
export async function postCredit(
  tx: Tx,
  opts: { accountId: string; amountMicros: bigint; reference?: string; idempotencyKey?: string },
): Promise<{ transactionId: string; balanceMicros: bigint }> {
  const tenant = tenantLedger(opts.accountId);
  if (opts.idempotencyKey !== undefined) {
    // Serialize retries of one top-up so the second sees the first's transaction.
    await tx.execute(sql`SELECT pg_advisory_xact_lock(${lockKeyFor(`credit:${opts.idempotencyKey}`)})`);
    const [prior] = await tx
      .select({ id: journalTransactions.id })
      .from(journalTransactions)
      .where(eq(journalTransactions.idempotencyKey, opts.idempotencyKey));
    if (prior) {
      const [bal] = await tx
        .select({ b: ledgerAccounts.balanceMicros })
        .from(ledgerAccounts)
        .where(eq(ledgerAccounts.id, tenant));
      return { transactionId: prior.id, balanceMicros: bal?.b ?? 0n };
    }
  }
  await tx.insert(ledgerAccounts).values({ id: FUNDING_LEDGER, kind: 'funding' }).onConflictDoNothing();
  // Lock both legs in id order (the order every multi-account writer uses) to rule out deadlocks.
  const locked = await tx.execute<{ id: string }>(
    sql`SELECT id FROM ledger_accounts WHERE id IN (${FUNDING_LEDGER}, ${tenant}) ORDER BY id FOR UPDATE`,
  );
  if (!locked.rows.some((r) => r.id === tenant)) throw new UnknownAccountError(opts.accountId);
  const transactionId = newId('txn');
  await tx.insert(journalTransactions).values({
    id: transactionId,
    kind: 'credit',
    reference: opts.reference ?? null,
    idempotencyKey: opts.idempotencyKey ?? null,
  });
  await tx.insert(journalEntries).values([
    { transactionId, ledgerAccountId: tenant, amountMicros: opts.amountMicros },
    { transactionId, ledgerAccountId: FUNDING_LEDGER, amountMicros: -opts.amountMicros },
  ]);
  await tx
    .update(ledgerAccounts)
    .set({
      balanceMicros: sql`${ledgerAccounts.balanceMicros} - ${opts.amountMicros}`,
      updatedAt: sql`now()`,
    })
    .where(eq(ledgerAccounts.id, FUNDING_LEDGER));
  const [row] = await tx
    .update(ledgerAccounts)
    .set({
      balanceMicros: sql`${ledgerAccounts.balanceMicros} + ${opts.amountMicros}`,
      updatedAt: sql`now()`,
    })
    .where(eq(ledgerAccounts.id, tenant))
    .returning({ b: ledgerAccounts.balanceMicros });
  return { transactionId, balanceMicros: row!.b };
}

/**
 * Tops up a tenant's balance: one journal transaction moving `amountMicros` from `funding` to the
 * tenant. With an `idempotencyKey`, a retry returns the first transaction and posts nothing. For
 * billing and test fixtures: services other than billing never call it.
 */
export async function addCredit(
  db: Db,
  opts: { accountId: string; amountMicros: bigint; reference?: string; idempotencyKey?: string },
): Promise<{ transactionId: string; balanceMicros: bigint }> {
  if (opts.amountMicros <= 0n) throw new RangeError('credit amount must be positive');
  return db.transaction((tx) => postCredit(tx, opts));
}

/** Balance, active holds, and what remains available to admit new requests. */
export async function getBalance(
  db: Db,
  accountId: string,
): Promise<{ balanceMicros: bigint; heldMicros: bigint; availableMicros: bigint }> {
  const r = await db.execute<{ balance: string | null; held: string }>(sql`
    SELECT (SELECT balance_micros FROM ledger_accounts WHERE id = ${tenantLedger(accountId)})::text AS balance,
           (SELECT coalesce(sum(amount_micros), 0) FROM holds
             WHERE account_id = ${accountId} AND expires_at > now())::text AS held`);
  const row = r.rows[0];
  const balanceMicros = BigInt(row?.balance ?? '0');
  const heldMicros = BigInt(row?.held ?? '0');
  return { balanceMicros, heldMicros, availableMicros: balanceMicros - heldMicros };
}

export interface AccountBalance {
  accountId: string;
  name: string;
  balanceMicros: bigint;
  heldMicros: bigint;
  availableMicros: bigint;
}

/** Every tenant with its balance (admin listing). */
export async function listBalances(db: Db): Promise<AccountBalance[]> {
  const r = await db.execute<{ id: string; name: string; balance: string | null; held: string }>(sql`
    SELECT a.id, a.name, l.balance_micros::text AS balance,
           coalesce((SELECT sum(h.amount_micros) FROM holds h
                      WHERE h.account_id = a.id AND h.expires_at > now()), 0)::text AS held
      FROM accounts a LEFT JOIN ledger_accounts l ON l.id = 'tenant:' || a.id
     ORDER BY a.created_at, a.id`);
  return r.rows.map((row) => {
    const balanceMicros = BigInt(row.balance ?? '0');
    const heldMicros = BigInt(row.held);
    return {
      accountId: row.id,
      name: row.name,
      balanceMicros,
      heldMicros,
      availableMicros: balanceMicros - heldMicros,
    };
  });
}

/**
 * Creates the bootstrap tenant owning `apiKey` (from config), once: the account (with its empty
 * balance) and the key, no money. Its credit is a credit command billing applies once per account
 * (`bootstrapCreditKey`). Race-safe: several ingress replicas starting together create it once.
 */
export async function ensureBootstrapAccount(
  db: Db,
  opts: { apiKey: string },
): Promise<{ created: boolean; accountId: string }> {
  const hash = hashApiKey(opts.apiKey);
  return db.transaction(async (tx) => {
    await tx.execute(sql`SELECT pg_advisory_xact_lock(${lockKeyFor(`bootstrap:${hash}`)})`);
    const [existing] = await tx
      .select({ accountId: apiKeys.accountId, prefix: apiKeys.prefix })
      .from(apiKeys)
      .where(eq(apiKeys.hash, hash));
    if (existing) {
      // A row written before `displayPrefix` showed less of a chosen key gets today's prefix.
      const prefix = displayPrefix(opts.apiKey);
      if (existing.prefix !== prefix) await tx.update(apiKeys).set({ prefix }).where(eq(apiKeys.hash, hash));
      return { created: false, accountId: existing.accountId };
    }
    const accountId = newId('acct');
    await insertAccount(tx, accountId, 'bootstrap');
    await tx.insert(apiKeys).values({
      id: newId('key'),
      accountId,
      hash,
      prefix: displayPrefix(opts.apiKey),
      name: 'bootstrap',
      scopes: [...KEY_SCOPES],
    });
    return { created: true, accountId };
  });
}
