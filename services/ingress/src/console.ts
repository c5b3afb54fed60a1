import { existsSync } from 'node:fs';
import { join } from 'node:path';
import fastifyStatic from '@fastify/static';
import type { FastifyInstance } from 'fastify';
import { CONSOLE_DIST } from '@faregate/console/paths';
import { GatewayError } from '@faregate/contracts/errors';
import { defaultAuth } from './plugins/auth.ts';

export const CONSOLE_PATH = '/admin/console';

/**
 * The console's pages may run only the console's own script and style, talk only to this origin,
 * and be framed by nobody: no inline script or style, no eval, no third-party host (it works offline).
 */
export const CONSOLE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "font-src 'self'",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

/**
 * The operator's web console (packages/console, built into its dist/) at `/admin/console/`, and
 * `/console` leading there. Under `/admin` so the admin session cookie (Path=/admin, from
 * `/admin/login`) reaches it and the admin API it calls. Its files are public and hold no data: every
 * figure comes from `/admin/v1/*`, which needs the session (or the admin token); a page without one
 * sends the browser to `/admin/login`. Only the files present at start are served (no wildcard).
 */
export async function registerConsole(app: FastifyInstance, dist = CONSOLE_DIST): Promise<void> {
  await app.register(async (scope) => {
    defaultAuth(scope, 'none');
    scope.addHook('onSend', async (_req, reply) => {
      reply.header('content-security-policy', CONSOLE_CSP);
      reply.header('x-content-type-options', 'nosniff');
      reply.header('referrer-policy', 'no-referrer');
      reply.header('cross-origin-opener-policy', 'same-origin');
      reply.header('cache-control', 'no-cache');
    });
    scope.get('/console', { schema: { hide: true } }, async (_req, reply) =>
      reply.redirect(`${CONSOLE_PATH}/`, 302),
    );
    if (existsSync(join(dist, 'index.html'))) {
      await scope.register(fastifyStatic, {
        root: dist,
        prefix: `${CONSOLE_PATH}/`,
        wildcard: false,
        redirect: true,
        decorateReply: false,
        schemaHide: true,
        index: 'index.html',
        dotfiles: 'deny',
      });
    } else {
      // A checkout where nobody built the console: say how, instead of a bare 404.
      const notBuilt = async () => {
        throw new GatewayError({
          code: 'overloaded',
          message: 'The console is not built: run `pnpm --filter @faregate/console build` and restart.',
        });
      };
      scope.get(CONSOLE_PATH, { schema: { hide: true } }, notBuilt);
      scope.get(`${CONSOLE_PATH}/*`, { schema: { hide: true } }, notBuilt);
    }
  });
}
