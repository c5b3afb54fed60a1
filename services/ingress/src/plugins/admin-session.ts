import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import type { FastifyRequest } from 'fastify';

/** The cookie that carries an admin session (browsers: the console and the queue dashboard). */
export const ADMIN_COOKIE = 'fg_admin';
/** How long a session lasts before the admin token must be entered again. */
export const ADMIN_SESSION_SECONDS = 12 * 3600;

/**
 * Admin sessions without server state: `<expiry>.<HMAC(expiry)>`, keyed by the admin token, so a new
 * admin token ends every session at once. The token itself never leaves the login request; the
 * cookie is HttpOnly, SameSite=Strict and scoped to `/admin`.
 */
export class AdminSessions {
  readonly #key: Buffer;

  constructor(adminToken: string) {
    this.#key = createHash('sha256').update(`faregate-admin-session:${adminToken}`).digest();
  }

  #sign(expires: number): Buffer {
    return createHmac('sha256', this.#key).update(`v1.${expires}`).digest();
  }

  issue(nowMs = Date.now()): string {
    const expires = Math.floor(nowMs / 1000) + ADMIN_SESSION_SECONDS;
    return `${expires}.${this.#sign(expires).toString('base64url')}`;
  }

  verify(value: string | undefined, nowMs = Date.now()): boolean {
    const m = /^(\d{1,12})\.([A-Za-z0-9_-]{43})$/.exec(value ?? '');
    if (!m?.[1] || !m[2]) return false;
    const expires = Number(m[1]);
    if (expires * 1000 <= nowMs) return false;
    const given = Buffer.from(m[2], 'base64url');
    const want = this.#sign(expires);
    return given.length === want.length && timingSafeEqual(given, want);
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
