import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyRequest, RouteOptions } from 'fastify';
import { GatewayError } from '@faregate/contracts/errors';
import type { Db } from '@faregate/db/client';
import { findApiKey, hashApiKey, unusableKeyHashes, type ApiKeyRecord } from '@faregate/db/api-keys';
import { isDbUnavailable } from '@faregate/db/unavailable';
import { ADMIN_COOKIE, type AdminSessions, cookieValue, sameOriginOrSafe } from './admin-session.ts';
import { hasLimits, type LimitState, registerLimitHeaders, type RequestLimits } from '../request-limits.ts';
import { anthropicShaped } from './errors.ts';

export interface Principal {
  accountId: string;
  keyId: string;
  scopes: string[];
  allowedModels: string[] | null;
  /** The key's and its account's requests/tokens per minute, when any is set (request-limits.ts). */
  limits?: RequestLimits;
  /** The key's patience with a rate-limited provider (ms), when set; else the gateway's default. */
  patienceMs?: number;
  /** Set by admission of a limited key: what its `x-ratelimit-*` response headers say. */
  limitState?: LimitState;
}

/**
 * Who may call a route, declared in its options (`config: { auth }`) or by its plugin's default
 * (`defaultAuth`), never inferred from the URL:
 * - `none`: anyone (health probes);
 * - `key`: a tenant API key (`Authorization: Bearer` or `x-api-key`), with `scope` when set;
 * - `key-or-stream-token`: the same, or a single-use stream token in `?token=` (browser WebSockets);
 * - `admin`: the admin token (no admin token configured: the route answers 404), or a browser's admin
 *   session cookie from `POST /admin/login` (writes only from the gateway's own pages).
 */
export type RouteAuth = 'none' | 'key' | 'key-or-stream-token' | 'admin';

declare module 'fastify' {
  interface FastifyContextConfig {
    auth?: RouteAuth;
    /** A scope the tenant key must hold (a key with no scopes holds them all). */
    scope?: string;
  }
  interface FastifyRequest {
    /** The authenticated tenant, on routes whose auth is `key` or `key-or-stream-token`. */
    principal?: Principal;
    /** The hash of the key that authenticated the request (open sockets re-check it). */
    credential?: string;
  }
}

/** The tenant of a request on a key-authenticated route (the auth hook has run). */
export function principalOf(req: FastifyRequest): Principal {
  if (!req.principal) {
    // Only reachable if a route that reads the principal declared `auth: 'none'` or `'admin'`.
    throw new GatewayError({ code: 'internal_error', message: 'route has no tenant auth' });
  }
  return req.principal;
}

const digest = (s: string) => createHash('sha256').update(s).digest();

/** The key from `Authorization: Bearer …` (or `x-api-key`), or undefined. */
export function keyFrom(headers: FastifyRequest['headers']): string | undefined {
  const auth = headers.authorization;
  // A Bearer token is the key. Any other `Authorization` (empty, `Bearer` alone, or another scheme a
  // proxy on the way may add) carries none: `x-api-key` still counts.
  if (typeof auth === 'string') {
    const key = /^Bearer\s+(.+)$/i.exec(auth.trim())?.[1]?.trim();
    if (key) return key;
  }
  const x = headers['x-api-key'];
  return typeof x === 'string' && x ? x : undefined;
}

/**
 * Node keeps the first of several `Authorization` headers and drops the rest, where a proxy in front
 * may read another: a request carrying more than one is refused rather than judged by a guess.
 */
function oneAuthorization(raw: string[]): void {
  let auth = 0;
  let apiKey = 0;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i];
    // Several `x-api-key` headers Node joins with ", " into one that is no key: refused alike.
    const which =
      name?.length === 13 && name.toLowerCase() === 'authorization'
        ? 'Authorization'
        : name?.length === 9 && name.toLowerCase() === 'x-api-key'
          ? 'x-api-key'
          : undefined;
    if (which && (which === 'Authorization' ? ++auth : ++apiKey) > 1) {
      throw new GatewayError({
        code: 'invalid_request_error',
        message: `The request carries more than one ${which} header: send exactly one.`,
      });
    }
  }
}

/** What the auth hook needs: how to check a tenant key, redeem a stream token, and the admin token. */
export interface AuthOptions {
  /** Resolves a key hash (`hashApiKey`) to its tenant, or throws `invalid_api_key`. */
  authenticateHash(hash: string): Promise<Principal>;
  /** Redeems a stream token to the hash of the key it was minted for, or throws `invalid_api_key`. */
  redeemStreamToken?(token: string): Promise<string>;
  adminToken: string | undefined;
  /** The admin area's browser sessions (set when `adminToken` is). */
  adminSessions?: AdminSessions;
}

/** Every route registered in `app` (a plugin and its children) gets `auth` unless it declares its own. */
export function defaultAuth(app: FastifyInstance, auth: RouteAuth): void {
  app.addHook('onRoute', (r) => {
    r.config = { ...r.config, auth: r.config?.auth ?? auth };
  });
}

/**
 * Every route registered in `app` gets `scope` unless it declares its own: the key scope a whole
 * API needs (`files`, `batches`), declared where its routes are registered, never per handler.
 */
export function defaultScope(app: FastifyInstance, scope: string): void {
  app.addHook('onRoute', (r) => {
    r.config = { ...r.config, scope: r.config?.scope ?? scope };
  });
}

/** No key: said in the door's terms (Anthropic's clients send `x-api-key`; both headers work everywhere). */
const noKey = (anthropic: boolean, authorization: string | undefined) =>
  new GatewayError({
    code: 'invalid_api_key',
    message: `${authorization?.trim() ? 'The Authorization header holds no Bearer token. ' : "You didn't provide an API key. "}${
      anthropic
        ? "Send the key in the 'x-api-key' header (or as 'Authorization: Bearer <key>')."
        : "Send it as 'Authorization: Bearer <key>'."
    }`,
  });

/**
 * The one auth hook. It reads the policy of the route the router matched (so an encoded, doubled or
 * otherwise disguised path gets exactly the policy of the route it reaches), and the app refuses to
 * start if any route declares none. Register it on the root instance before any route.
 */
export function registerAuth(app: FastifyInstance, opts: AuthOptions): void {
  const routes: RouteOptions[] = [];
  app.addHook('onRoute', (r) => {
    routes.push(r);
  });
  app.addHook('onReady', async () => {
    const open = routes.filter((r) => !r.config?.auth);
    if (open.length > 0) {
      const names = open.map((r) => `${String(r.method)} ${r.url}`).join(', ');
      throw new Error(`routes without a declared auth policy: ${names}`);
    }
  });
  registerLimitHeaders(app);
  const admin = opts.adminToken ? digest(opts.adminToken) : undefined;
  const sessions = opts.adminSessions;

  app.addHook('onRequest', async (req) => {
    if (req.is404) return; // the not-found handler answers 404 and reveals nothing
    const { auth, scope } = req.routeOptions.config;
    if (auth !== 'none') oneAuthorization(req.raw.rawHeaders);
    switch (auth) {
      case 'none':
        return;
      case 'admin': {
        if (!admin) {
          throw new GatewayError({
            code: 'not_found',
            message: `Unknown request URL: ${req.method} ${req.url.split('?')[0]}.`,
          });
        }
        const m = /^Bearer\s+(.+)$/i.exec(req.headers.authorization?.trim() ?? '');
        // Compare digests: equal length whatever was sent, so timing reveals nothing about the token.
        if (m?.[1] && timingSafeEqual(digest(m[1].trim()), admin)) return;
        // A browser's admin session (POST /admin/login): no token in the page, no write from elsewhere.
        if (!m && (await sessions?.verify(cookieValue(req.headers.cookie, ADMIN_COOKIE)))) {
          if (sameOriginOrSafe(req)) return;
          throw new GatewayError({
            code: 'permission_denied',
            message: "Cross-site request refused: admin changes must come from the gateway's own pages.",
          });
        }
        throw new GatewayError({ code: 'invalid_api_key', message: 'Invalid admin token.' });
      }
      case 'key':
      case 'key-or-stream-token': {
        const key = keyFrom(req.headers);
        const token = (req.query as { token?: unknown } | undefined)?.token;
        let hash: string;
        if (key) hash = hashApiKey(key);
        else if (auth === 'key-or-stream-token' && typeof token === 'string' && opts.redeemStreamToken) {
          hash = await opts.redeemStreamToken(token);
        } else throw noKey(anthropicShaped(req), req.headers.authorization);
        const p = await opts.authenticateHash(hash).catch((err: unknown) => {
          // Name the key as OpenAI does, by its start and end, never whole.
          if (err instanceof GatewayError && err.code === 'invalid_api_key' && key) {
            throw new GatewayError({
              code: 'invalid_api_key',
              message: `Incorrect API key provided: ${mask(key)}.`,
            });
          }
          throw err;
        });
        if (scope) requireScope(p, scope);
        req.principal = p;
        req.credential = hash;
        return;
      }
      default:
        // Fail closed: registerAuth refuses to start with such a route, this is the second lock.
        throw new GatewayError({ code: 'internal_error', message: 'route has no auth policy' });
    }
  });
}

type Entry = { rec: ApiKeyRecord | undefined; until: number };

/**
 * Tenant keys, looked up by their SHA-256 hash (the raw key is never stored or logged), with a short
 * cache. Revocation takes effect at once in every ingress process through `revoked(keyId)` (a Redis
 * broadcast, see create-deps.ts): it drops the key from the cache and ends the key's open sockets. If
 * a broadcast is lost, the cache's TTL (`ttlMs`) bounds how long HTTP requests with that key are
 * still admitted, and the re-check of open sockets every `ttlMs` bounds how long a socket stays open.
 */
export class Authenticator {
  readonly #db: Db;
  readonly #ttlMs: number;
  readonly #cache = new Map<string, Entry>();
  /** Lookups under way: every request for a key not cached waits on the one query for it. */
  readonly #loading = new Map<string, Promise<Entry>>();
  /** Bumped by each revocation: a lookup that started before one does not fill the cache. */
  #revocations = 0;
  /** Key hash → callbacks of open sockets authenticated with it. */
  readonly #watchers = new Map<string, Set<() => void>>();
  readonly #timer: NodeJS.Timeout;

  constructor(db: Db, ttlMs = 1_000) {
    this.#db = db;
    this.#ttlMs = ttlMs;
    this.#timer = setInterval(() => void this.#recheck().catch(() => {}), ttlMs);
    this.#timer.unref();
  }

  async authenticateHash(hash: string): Promise<Principal> {
    const now = Date.now();
    let hit = this.#cache.get(hash);
    if (!hit || hit.until < now) hit = await this.#lookup(hash);
    const rec = hit.rec;
    if (!rec || rec.revoked) {
      throw new GatewayError({ code: 'invalid_api_key', message: 'Incorrect API key provided.' });
    }
    // A new object per request: admission writes the request's limit state into it.
    const p: Principal = {
      accountId: rec.accountId,
      keyId: rec.id,
      scopes: rec.scopes,
      allowedModels: rec.allowedModels,
    };
    const limits: RequestLimits = {
      keyRpm: rec.rpmLimit ?? undefined,
      keyTpm: rec.tpmLimit ?? undefined,
      accountRpm: rec.accountRpmLimit ?? undefined,
      accountTpm: rec.accountTpmLimit ?? undefined,
    };
    if (hasLimits(limits)) p.limits = limits;
    if (rec.patienceMs !== null) p.patienceMs = rec.patienceMs;
    return p;
  }

  /**
   * One query per key however many requests need it at once (when its cache entry lapses, every
   * request in flight with that key would otherwise query the database).
   */
  #lookup(hash: string): Promise<Entry> {
    let loading = this.#loading.get(hash);
    if (loading) return loading;
    const revocations = this.#revocations;
    loading = findApiKey(this.#db, hash)
      .then(
        (rec) => {
          const entry = { rec, until: Date.now() + this.#ttlMs };
          if (revocations === this.#revocations) {
            if (this.#cache.size > 50_000) this.#cache.clear();
            this.#cache.set(hash, entry);
          }
          return entry;
        },
        (err: unknown) => {
          if (!isDbUnavailable(err)) throw err;
          throw new GatewayError({
            code: 'overloaded',
            message: 'The gateway cannot reach its database to check your API key; retry shortly.',
            retryAfterMs: 2_000,
          });
        },
      )
      .finally(() => this.#loading.delete(hash));
    this.#loading.set(hash, loading);
    return loading;
  }

  /** Calls `onRevoked` once when the key `hash` stops being valid; returns a function that stops watching. */
  watch(hash: string, onRevoked: () => void): () => void {
    let set = this.#watchers.get(hash);
    if (!set) {
      set = new Set();
      this.#watchers.set(hash, set);
    }
    set.add(onRevoked);
    return () => {
      const s = this.#watchers.get(hash);
      s?.delete(onRevoked);
      if (s?.size === 0) this.#watchers.delete(hash);
    };
  }

  /** A key was revoked (by any process): forget it and end what it keeps open. */
  revoked(keyId: string): void {
    this.#revocations++;
    for (const [hash, e] of this.#cache) {
      if (e.rec?.id === keyId) {
        this.#cache.delete(hash);
        this.#fire(hash);
      }
    }
    // Sockets whose key is no longer cached: re-checked against the database right away.
    void this.#recheck().catch(() => {});
  }

  close(): void {
    clearInterval(this.#timer);
  }

  #fire(hash: string): void {
    const set = this.#watchers.get(hash);
    if (!set) return;
    this.#watchers.delete(hash);
    for (const cb of set) cb();
  }

  async #recheck(): Promise<void> {
    if (this.#watchers.size === 0) return;
    for (const hash of await unusableKeyHashes(this.#db, [...this.#watchers.keys()])) {
      this.#cache.delete(hash);
      this.#fire(hash);
    }
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
