import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyReply } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { GatewayError } from '@faregate/contracts/errors';
import {
  ADMIN_COOKIE,
  type AdminSessions,
  clearedAdminCookie,
  cookieValue,
} from '../../plugins/admin-session.ts';

const LoginBody = z.object({
  token: z.string().min(1).max(4096),
  /** Where a form login goes next: a page of the gateway's admin area only (no open redirect). */
  next: z.string().max(512).optional(),
});

const safeNext = (next: string | undefined) =>
  next && /^\/admin\/[A-Za-z0-9/_-]*$/.test(next) && !next.includes('//') ? next : '/admin/queues';

const digest = (s: string) => createHash('sha256').update(s).digest();

const page = (failed: boolean, next: string) => `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Faregate admin</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font-family:system-ui,sans-serif;display:grid;place-items:center;min-height:90vh;background:#f6f7f9}
form{background:#fff;padding:2rem;border-radius:8px;box-shadow:0 1px 4px #0002;display:grid;gap:.75rem;width:20rem}
input,button{font:inherit;padding:.5rem}.err{color:#b00020}</style></head>
<body><form method="post" action="/admin/login"><h1>Faregate admin</h1>
${failed ? '<p class="err" role="alert">That is not the admin token.</p>' : ''}
<label for="token">Admin token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
<input type="hidden" name="next" value="${next}">
<button type="submit">Sign in</button></form></body></html>`;

/** The sign-in page (again, after a wrong token): never cached, never framed, no script. */
const loginPage = (reply: FastifyReply, status: number, failed: boolean, next: string) =>
  reply
    .code(status)
    .type('text/html; charset=utf-8')
    .header('cache-control', 'no-store')
    .header(
      'content-security-policy',
      "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
    )
    .send(page(failed, next));

/**
 * Browser sign-in for the admin area (`/admin/queues`, the console): the admin token is posted once
 * (form or JSON) and exchanged for a session cookie; it never appears in a URL or a page.
 * Without FAREGATE_ADMIN_TOKEN these routes answer 404, like every admin route.
 */
export async function adminSessionRoutes(
  app: FastifyInstance,
  adminToken: string | undefined,
  sessions: AdminSessions | undefined,
): Promise<void> {
  const r = app.withTypeProvider<ZodTypeProvider>();
  const expected = adminToken ? digest(adminToken) : undefined;
  const notFound = (url: string) =>
    new GatewayError({ code: 'not_found', message: `Unknown request URL: ${url}.` });

  app.addContentTypeParser(
    'application/x-www-form-urlencoded',
    { parseAs: 'string', bodyLimit: 16 * 1024 },
    (_req, body, done) => {
      // Own properties only (fromEntries defines them): '__proto__' is a plain, refused field.
      done(null, Object.fromEntries(new URLSearchParams(String(body))));
    },
  );

  r.get(
    '/admin/login',
    { config: { auth: 'none' }, schema: { querystring: z.object({ next: z.string().max(512).optional() }) } },
    async (req, reply) => {
      if (!sessions) throw notFound('GET /admin/login');
      return loginPage(reply, 200, false, safeNext(req.query.next));
    },
  );

  r.post('/admin/login', { config: { auth: 'none' }, schema: { body: LoginBody } }, async (req, reply) => {
    if (!sessions || !expected) throw notFound('POST /admin/login');
    const form = req.headers['content-type']?.startsWith('application/x-www-form-urlencoded') === true;
    if (!timingSafeEqual(digest(req.body.token), expected)) {
      if (form) return loginPage(reply, 401, true, safeNext(req.body.next));
      throw new GatewayError({ code: 'invalid_api_key', message: 'Invalid admin token.' });
    }
    reply.header('set-cookie', sessions.cookie(req)).header('cache-control', 'no-store');
    if (form) return reply.code(303).header('location', safeNext(req.body.next)).send();
    return reply.code(204).send();
  });

  r.post('/admin/logout', { config: { auth: 'none' } }, async (req, reply) => {
    if (!sessions) throw notFound('POST /admin/logout');
    // The session ends for every process, not only in this browser: a copy of the cookie is refused too.
    await sessions.end(cookieValue(req.headers.cookie, ADMIN_COOKIE));
    return reply.header('set-cookie', clearedAdminCookie).code(204).send();
  });
}
