import type { FastifyRequest } from 'fastify';
import { GatewayError } from '@faregate/contracts/errors';
import type { Db } from '@faregate/db/client';
import { findApiKey, hashApiKey, type ApiKeyRecord } from '@faregate/db/api-keys';
import '../routes/billing/principal.ts';

export interface Principal {
  accountId: string;
  keyId: string;
  scopes: string[];
  allowedModels: string[] | null;
}

/**
 * API-key authentication with a short cache (revocation bites within `ttlMs`). Keys are looked up
 * by their SHA-256 hash; the raw key is never stored or logged.
 */
export class Authenticator {
  readonly #db: Db;
  readonly #ttlMs: number;
  readonly #cache = new Map<string, { rec: ApiKeyRecord | undefined; until: number }>();

  constructor(db: Db, ttlMs = 10_000) {
    this.#db = db;
    this.#ttlMs = ttlMs;
  }

  /** The key from `Authorization: Bearer …` (or `x-api-key`), or undefined. */
  static keyFrom(headers: FastifyRequest['headers']): string | undefined {
    const auth = headers.authorization;
    if (typeof auth === 'string') {
      const m = /^Bearer\s+(.+)$/i.exec(auth.trim());
      return m?.[1]?.trim() || undefined;
    }
    const x = headers['x-api-key'];
    return typeof x === 'string' && x ? x : undefined;
  }

  async authenticate(key: string | undefined): Promise<Principal> {
    if (!key) {
      throw new GatewayError({
        code: 'invalid_api_key',
        message: "You didn't provide an API key. Send it as 'Authorization: Bearer <key>'.",
      });
    }
    const hash = hashApiKey(key);
    const now = Date.now();
    let hit = this.#cache.get(hash);
    if (!hit || hit.until < now) {
      hit = { rec: await findApiKey(this.#db, hash), until: now + this.#ttlMs };
      if (this.#cache.size > 50_000) this.#cache.clear();
      this.#cache.set(hash, hit);
    }
    const rec = hit.rec;
    if (!rec || rec.revoked) {
      throw new GatewayError({
        code: 'invalid_api_key',
        message: `Incorrect API key provided: ${mask(key)}.`,
      });
    }
    return { accountId: rec.accountId, keyId: rec.id, scopes: rec.scopes, allowedModels: rec.allowedModels };
  }
}

/** Shows only the start and end of a key, as OpenAI does. */
function mask(key: string): string {
  if (key.length <= 8) return '***';
  return `${key.slice(0, 4)}${'*'.repeat(Math.min(12, key.length - 8))}${key.slice(-4)}`;
}

export function requireScope(p: Principal, scope: string): void {
  if (p.scopes.length > 0 && !p.scopes.includes(scope)) {
    throw new GatewayError({
      code: 'permission_denied',
      message: `This API key lacks the '${scope}' scope.`,
    });
  }
}
