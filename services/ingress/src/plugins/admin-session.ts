import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import type { Keys } from '@faregate/queue/keys';
import type { RedisClient } from '@faregate/queue/redis';

/** The cookie that carries an admin session (browsers: the console and the queue dashboard). */
export const ADMIN_COOKIE = 'fg_admin';
/** How long a session lasts before the admin token must be entered again. */
export const ADMIN_SESSION_SECONDS = 12 * 3600;

/** Where ended sessions are remembered, shared by every ingress process (Redis). */
export interface EndedSessions {
  /** Remembers `signature` as ended until `untilMs` (epoch ms: when the session would have expired). */
  end(signature: string, untilMs: number): Promise<void>;
  ended(signature: string): Promise<boolean>;
}

/** Ended sessions in Redis, each kept until its session would have expired. */
export const redisEndedSessions = (redis: RedisClient, keys: Keys): EndedSessions => ({
  end: async (signature, untilMs) => {
    await redis.set(keys.adminSessionEnded(signature), '1', 'PXAT', untilMs);
  },
  ended: async (signature) => (await redis.exists(keys.adminSessionEnded(signature))) === 1,
});

/**
 * Admin sessions: `<expiry>.<random id>.<HMAC(both)>`, keyed by the admin token, so a new admin token ends
 * every session at once. The token itself never leaves the login request; the cookie is HttpOnly,
 * SameSite=Strict and scoped to `/admin`. A logout ends its own session everywhere (`ended`), not
 * only the browser's copy of the cookie: a captured cookie is refused afterwards.
 */
export class AdminSessions {
  readonly #key: Buffer;
  readonly #ended: EndedSessions | undefined;

  constructor(adminToken: string, ended?: EndedSessions) {
    this.#key = createHash('sha256').update(`faregate-admin-session:${adminToken}`).digest();
    this.#ended = ended;
  }

  #sign(expires: number, nonce: string): Buffer {
    return createHmac('sha256', this.#key).update(`v2.${expires}.${nonce}`).digest();
  }

  /** A new session: its expiry, a random id (two sessions of one second differ), their signature. */
  issue(nowMs = Date.now()): string {
    const expires = Math.floor(nowMs / 1000) + ADMIN_SESSION_SECONDS;
    const nonce = randomBytes(12).toString('base64url');
    return `${expires}.${nonce}.${this.#sign(expires, nonce).toString('base64url')}`;
  }

  /** The session's expiry (epoch s) and signature if `value` is one this token signed and not expired. */
  #valid(value: string | undefined, nowMs: number): { expires: number; signature: string } | undefined {
    const m = /^(\d{1,12})\.([A-Za-z0-9_-]{16})\.([A-Za-z0-9_-]{43})$/.exec(value ?? '');
    if (!m?.[1] || !m[2] || !m[3]) return undefined;
    const expires = Number(m[1]);
    if (expires * 1000 <= nowMs) return undefined;
    const given = Buffer.from(m[3], 'base64url');
    const want = this.#sign(expires, m[2]);
    return given.length === want.length && timingSafeEqual(given, want)
      ? { expires, signature: m[3] }
      : undefined;
  }

  /** Whether `value` is a live session: signed with this token, not expired, not logged out. */
  async verify(value: string | undefined, nowMs = Date.now()): Promise<boolean> {
    const s = this.#valid(value, nowMs);
    if (!s) return false;
    return !(await this.#ended?.ended(s.signature));
  }

  /** Ends the session `value` (a logout): refused from now on, by every process. */
  async end(value: string | undefined, nowMs = Date.now()): Promise<void> {
    const s = this.#valid(value, nowMs);
    if (s) await this.#ended?.end(s.signature, s.expires * 1000);
  }

  /** The Set-Cookie value for a new session (Secure when the request came over HTTPS). */
  cookie(req: FastifyRequest, nowMs = Date.now()): string {
    const secure = req.protocol === 'https' ? '; Secure' : '';
    return `${ADMIN_COOKIE}=${this.issue(nowMs)}; Path=/admin; HttpOnly; SameSite=Strict; Max-Age=${ADMIN_SESSION_SECONDS}${secure}`;
  }
}

/** The Set-Cookie value that ends a session. */
export const clearedAdminCookie = `${ADMIN_COOKIE}=; Path=/admin; HttpOnly; SameSite=Strict; Max-Age=0`;

/** One cookie's value from the Cookie header. */
export function cookieValue(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const i = part.indexOf('=');
    if (i > 0 && part.slice(0, i).trim() === name) return part.slice(i + 1).trim();
  }
  return undefined;
}

const SAFE = new Set(['GET', 'HEAD', 'OPTIONS']);

/**
 * Whether a cookie-authenticated request may act: reads always; a write only when the browser says
 * it comes from this origin (`Sec-Fetch-Site: same-origin`, or an `Origin` naming this host), so no
 * other site can make an admin's browser change anything (CSRF), on top of SameSite=Strict.
 */
export function sameOriginOrSafe(req: FastifyRequest): boolean {
  if (SAFE.has(req.method)) return true;
  const site = req.headers['sec-fetch-site'];
  if (site !== undefined) return site === 'same-origin';
  const origin = req.headers.origin;
  if (!origin) return false;
  try {
    return new URL(origin).host === req.headers.host;
  } catch {
    return false;
  }
}
