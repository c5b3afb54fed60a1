import { createHash, hash, randomBytes } from 'node:crypto';
import { and, eq, inArray, sql } from 'drizzle-orm';
import type { Db } from './client.ts';
import { accounts } from './schema/accounts.ts';
import { apiKeys } from './schema/api-keys.ts';

const KEY_PREFIX = 'fg_live_';
const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
const BODY_CHARS = 24; // 24 base62 chars ≈ 142.9 bits
const CHECKSUM_CHARS = 6;
/** How much of a key is shown in listings and logs: `fg_live_` + 4 random chars. Not secret. */
const DISPLAY_CHARS = KEY_PREFIX.length + 4;

/** Every scope a tenant key can carry; new keys get all of them unless narrowed. */
export const KEY_SCOPES = ['chat', 'batches', 'files', 'usage'] as const;

/** sha256 hex. Tenant keys carry ≥128 random bits, so a fast hash is enough (no bcrypt latency). */
export function hashApiKey(key: string): string {
  // The one-shot form: no Hash object per request (it is on every request's path).
  return hash('sha256', key, 'hex');
}

function base62(bytes: Buffer, chars: number): string {
  // Rejection-free mapping: each char from 2 bytes mod 62 has negligible bias (< 0.1 %).
  let out = '';
  for (let i = 0; i < chars; i++) out += BASE62[bytes.readUInt16BE(i * 2) % 62];
  return out;
}

function checksum(body: string): string {
  // CRC-style suffix lets secret scanners reject random look-alikes without a database lookup.
  let n = BigInt(`0x${createHash('sha256').update(body).digest('hex').slice(0, 12)}`);
  let out = '';
  for (let i = 0; i < CHECKSUM_CHARS; i++) {
    out = BASE62[Number(n % 62n)] + out;
    n /= 62n;
  }
  return out;
}

/** A new tenant key: `fg_live_` + 24 base62 chars (≈143 random bits) + a 6-char checksum. */
export function generateApiKey(): string {
  const body = KEY_PREFIX + base62(randomBytes(BODY_CHARS * 2), BODY_CHARS);
  return body + checksum(body);
}

/** True when `key` has our shape and a valid checksum (cheap pre-check before any lookup). */
export function isWellFormedApiKey(key: string): boolean {
  if (!key.startsWith(KEY_PREFIX) || key.length !== KEY_PREFIX.length + BODY_CHARS + CHECKSUM_CHARS)
    return false;
  const body = key.slice(0, -CHECKSUM_CHARS);
  return checksum(body) === key.slice(-CHECKSUM_CHARS);
}

/**
 * The non-secret prefix stored with a key and shown in listings. A key of ours shows `fg_live_` and
 * 4 of its 30 random characters. A key the operator chose (`FAREGATE_BOOTSTRAP_KEY`, any string of 8
 * or more characters) has no public part: it shows an eighth of itself, at most 4 characters, then
 * `…` (`letmein123` → `l…`), so neither the listing nor the table gives most of it away.
 */
export function displayPrefix(key: string): string {
  if (key.startsWith(KEY_PREFIX) && key.length === KEY_PREFIX.length + BODY_CHARS + CHECKSUM_CHARS)
    return key.slice(0, DISPLAY_CHARS);
  return `${key.slice(0, Math.min(4, Math.floor(key.length / 8)))}…`;
}

export interface ApiKeyRecord {
  id: string;
  accountId: string;
  prefix: string;
  name: string;
  revoked: boolean;
  scopes: string[];
  allowedModels: string[] | null;
  spendLimitMicros: bigint | null;
  /** Requests / tokens per minute of the key and of its account (null: no such limit). */
  rpmLimit: number | null;
  tpmLimit: number | null;
  accountRpmLimit: number | null;
  accountTpmLimit: number | null;
  /** The key's patience with a rate-limited provider (null: the gateway's default). */
  patienceMs: number | null;
}

/**
 * Looks a key up by its hash with its account's limits (the caller hashes; a unique index and the
 * account's primary key make this one point read).
 */
export async function findApiKey(db: Db, hash: string): Promise<ApiKeyRecord | undefined> {
  const rows = await db
    .select({
      id: apiKeys.id,
      accountId: apiKeys.accountId,
      prefix: apiKeys.prefix,
      name: apiKeys.name,
      revoked: apiKeys.revoked,
      scopes: apiKeys.scopes,
      allowedModels: apiKeys.allowedModels,
      spendLimitMicros: apiKeys.spendLimitMicros,
      rpmLimit: apiKeys.rpmLimit,
      tpmLimit: apiKeys.tpmLimit,
      accountRpmLimit: accounts.rpmLimit,
      accountTpmLimit: accounts.tpmLimit,
      patienceMs: apiKeys.patienceMs,
    })
    .from(apiKeys)
    .innerJoin(accounts, eq(accounts.id, apiKeys.accountId))
    .where(eq(apiKeys.hash, hash))
    .limit(1);
  return rows[0];
}

/** Advisory-lock key (int8) derived from a string, for "create once" races. */
export function lockKeyFor(s: string) {
  return sql`('x' || substr(md5(${s}), 1, 16))::bit(64)::bigint`;
}

/** Of the given key hashes, those whose key is revoked or gone (one query, for re-checking open sockets). */
export async function unusableKeyHashes(db: Db, hashes: string[]): Promise<Set<string>> {
  if (hashes.length === 0) return new Set();
  const rows = await db
    .select({ hash: apiKeys.hash })
    .from(apiKeys)
    .where(and(inArray(apiKeys.hash, hashes), eq(apiKeys.revoked, false)));
  const usable = new Set(rows.map((r) => r.hash));
  return new Set(hashes.filter((h) => !usable.has(h)));
}
