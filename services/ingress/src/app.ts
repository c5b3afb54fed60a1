import { isUtf8 } from 'node:buffer';
import { GatewayError } from '@faregate/contracts/errors';
import { findCreditOutcome } from '@faregate/db/credit-commands';
import websocket from '@fastify/websocket';
import Fastify, { LogController, type FastifyInstance, type FastifyServerOptions } from 'fastify';
import { sql } from 'drizzle-orm';
import type { IngressDeps } from './deps.ts';
import { defaultAuth, defaultScope, principalOf, registerAuth } from './plugins/auth.ts';
import {
  clientErrorHandler,
  frameworkErrors,
  MAX_PARAM_CHARS,
  registerErrorHandling,
  registerZodSchemas,
} from './plugins/errors.ts';
import { providerAdminRoutes } from './routes/admin/providers.ts';
import { adminRoutes } from './routes/billing/admin.ts';
import { AdminSessions, redisEndedSessions } from './plugins/admin-session.ts';
import { usageRoutes } from './routes/billing/usage.ts';
import { registerIdempotency } from './idempotency.ts';
import { registerContentEncoding } from './plugins/content-encoding.ts';
import { registerMetrics } from './metrics.ts';
import { registerTracing } from './tracing.ts';
import { registerDocs } from './docs.ts';
import { registerQueueBoard } from './queue-board.ts';
import { registerConsole } from './console.ts';
import { adminViewRoutes } from './routes/admin/views.ts';
import { adminSessionRoutes } from './routes/admin/session.ts';
import { attachToRunningChat, chatRoutes } from './routes/v1/chat.ts';
import { jobRoutes, submittedAnswer } from './routes/v1/jobs.ts';
import { batchView, ownedBatch as ownedOpenAIBatch } from './openai-batches/batches.ts';
import { fileRoutes } from './routes/v1/files.ts';
import { batchRoutes } from './routes/v1/batches.ts';
import { embeddingsRoutes } from './routes/v1/embeddings.ts';
import { messagesRoutes } from './routes/v1/messages.ts';
import { responsesRoutes } from './routes/v1/responses.ts';
import { modelRoutes } from './routes/v1/models.ts';
import { streamRoutes } from './ws/stream.ts';
import { redeemStreamToken, streamTokenRoutes } from './ws/tokens.ts';
import { allowedOrigins as wsAllowedOrigins, originAllowed, registerUpgradeChecks } from './ws/upgrade.ts';
import { parseJsonText } from './request-body.ts';
import { boundUnreadBody } from './plugins/lingering-close.ts';

/** Secrets and prompts never reach the logs: only metadata is logged. */
export const LOG_REDACT = ['req.headers.authorization', 'req.headers["x-api-key"]', 'req.headers.cookie'];

/** The whole ingress as one Fastify app, built from `deps` (main.ts and tests share it). */
/** How long a WebSocket client has to answer the close frame when the ingress shuts down. */
const WS_CLOSE_GRACE_MS = 2_000;

export async function buildApp(deps: IngressDeps, opts: FastifyServerOptions = {}): Promise<FastifyInstance> {
  const app = Fastify({
    bodyLimit: deps.config.BODY_LIMIT_BYTES,
    loggerInstance: deps.log,
    logController: new LogController({ disableRequestLogging: true }),
    requestIdHeader: false,
    requestTimeout: deps.config.REQUEST_RECEIVE_TIMEOUT_MS,
    // Given to Node's server as it is made too (with Fastify's own setting alone, a trickled body
    // was never timed out here), checked every tenth of it (Node's default: every 30 s).
    http: {
      requestTimeout: deps.config.REQUEST_RECEIVE_TIMEOUT_MS,
      // A request without Host is refused by errors.ts in OpenAI's shape, not by Node with an empty 400.
      requireHostHeader: false,
      connectionsCheckingInterval: Math.min(
        30_000,
        Math.max(250, deps.config.REQUEST_RECEIVE_TIMEOUT_MS / 10),
      ),
    },
    trustProxy: true,
    // Errors answered before any handler runs (bad URL encoding, an over-long id, oversized headers)
    // keep OpenAI's error shape too.
    frameworkErrors,
    clientErrorHandler,
    routerOptions: { ignoreDuplicateSlashes: true, maxParamLength: MAX_PARAM_CHARS },
    ...opts,
  });
  // An empty body sent as JSON is no body: OpenAI's Python SDK sends `content-type:
  // application/json` with nothing after it on bodiless calls (`files.delete`, `batches.cancel`),
  // which Fastify's own parser refuses. Anything else is parsed as every JSON the gateway takes
  // (`parseJsonText`: prototype keys and numbers out of range refused).
  // Only JSON: a JSON body sent as text/plain is an unsupported Content-Type (errors.ts), not a
  // string that fails the schema as "not a JSON object".
  app.removeContentTypeParser(['application/json', 'text/plain']);
  // Read as bytes: a body that is not UTF-8 is refused, not decoded into U+FFFD for the model to read
  // in place of what the caller wrote (as a batch file is).
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (_req, body, done) => {
    const bytes = typeof body === 'string' ? Buffer.from(body) : body;
    if (bytes.length === 0) return done(null, undefined);
    if (!isUtf8(bytes))
      return done(
        new GatewayError({
          code: 'invalid_request_error',
          message: 'The request body is not valid UTF-8. Send JSON encoded as UTF-8.',
        }),
        undefined,
      );
    // A byte order mark opening the body is not part of the JSON (RFC 8259 §8.1 lets a parser ignore it).
    const decoded = bytes.toString('utf8');
    const text = decoded.charCodeAt(0) === 0xfeff ? decoded.slice(1) : decoded;
    try {
      done(null, parseJsonText(text));
    } catch (e) {
      // Not JSON: a 400 (errors.ts words it).
      done(e instanceof SyntaxError ? Object.assign(e, { statusCode: 400 }) : (e as Error), undefined);
    }
  });
  // First: a request refused by any later hook (auth, idempotency) is measured too.
  registerMetrics(app, deps.metrics);
  if (deps.tracing) registerTracing(app, deps.tracing);
  registerErrorHandling(app);
  // Whatever is answered before its body arrived (an early 401, a 404), the rest is read counted
  // and bounded: started before the answer goes out, or Node discards the rest itself, unbounded.
  const unread = {
    largestBodyBytes: deps.config.FILE_MAX_BYTES + 1024 * 1024,
    timeoutMs: deps.config.REQUEST_RECEIVE_TIMEOUT_MS,
  };
  app.addHook('onSend', (req, reply, payload, done) => {
    boundUnreadBody(req, reply, unread);
    done(null, payload);
  });
  registerZodSchemas(app);
  registerContentEncoding(app);
  // Before auth: a request to /v1/stream that will not become a socket (no upgrade, an Origin not
  // allowed) is refused before a single-use stream token is redeemed.
  const allowedOrigins = wsAllowedOrigins(deps.config.WS_ALLOWED_ORIGINS);
  registerUpgradeChecks(app, allowedOrigins);
  const adminToken = deps.config.FAREGATE_ADMIN_TOKEN;
  const adminSessions = adminToken
    ? new AdminSessions(adminToken, redisEndedSessions(deps.redis, deps.keys))
    : undefined;
  registerAuth(app, {
    authenticateHash: (hash) => deps.auth.authenticateHash(hash),
    redeemStreamToken: (token) => redeemStreamToken(deps, token),
    adminToken,
    adminSessions,
  });
  // Before any route: the API reference is generated from the routes as they are added.
  await registerDocs(app);
  await app.register(websocket, {
    options: {
      maxPayload: deps.config.WS_MAX_MESSAGE_BYTES,
      // CORS does not protect WebSockets: check Origin against the allowlist (cross-site hijacking).
      // The upgrade checks refuse such a request first, in OpenAI's error shape; this is the second lock.
      verifyClient: (info: { origin?: string }, cb: (ok: boolean, code?: number, msg?: string) => void) => {
        if (originAllowed(allowedOrigins, info.origin)) return cb(true);
        cb(false, 403, 'Origin not allowed');
      },
    },
    // A client's protocol fault (a message over WS_MAX_MESSAGE_BYTES, a bad frame) or a socket cut
    // on its side is the client's doing: logged in one line, not as an error with a stack any client
    // could flood the log with. On a protocol fault `ws` has already begun the close handshake with
    // the code that says why (1009 too big, 1002 protocol error): the socket is left to finish it,
    // not destroyed under the close frame. Anything else ends the socket at once.
    errorHandler: (error, socket, req) => {
      const code = (error as { code?: unknown }).code;
      const protocol = typeof code === 'string' && code.startsWith('WS_ERR_');
      req.log.info({ err: error.message, code }, 'websocket closed on a client fault');
      if (!protocol) socket.terminate();
    },
    // Shutting down: every socket is closed with 1001 (going away; the client reconnects, to another
    // ingress, and resumes from its cursors). One whose client does not answer the close frame is
    // cut after WS_CLOSE_GRACE_MS: `ws` would wait 30 s for the answer, holding the drain open
    // until the process was killed (and the HTTP drain's closeAllConnections never reaches an
    // upgraded socket).
    preClose(done) {
      const clients = this.websocketServer.clients;
      for (const client of clients) client.close(1001, 'server shutting down');
      if (clients.size > 0) {
        const cut = setTimeout(() => {
          for (const client of clients) client.terminate();
        }, WS_CLOSE_GRACE_MS);
        cut.unref();
      }
      done();
    },
  });

  app.get('/healthz', { config: { auth: 'none' } }, async () => ({ status: 'ok' }));
  // Ready once Redis and Postgres answer and every expected pool (EXPECTED_POOLS) has registered
  // since this process started. A pool that loses its workers later does not make the ingress
  // unready (the other pools still serve); its requests get 503 with retry-after meanwhile.
  app.get('/readyz', { config: { auth: 'none' } }, async (_req, reply) => {
    const checks = await Promise.allSettled([deps.redis.ping(), deps.db.execute(sql`select 1`)]);
    const [redis, db] = checks.map((c) => c.status === 'fulfilled');
    const live = deps.directory.providers;
    const expected = deps.config.EXPECTED_POOLS;
    const waiting = expected.filter((p) => !deps.directory.wasLive(p));
    // The bootstrap credit queued at start: ready once billing has recorded its outcome.
    if (
      db &&
      deps.awaitedCredit &&
      (await findCreditOutcome(deps.db, deps.awaitedCredit).catch(() => undefined))
    )
      deps.awaitedCredit = undefined;
    if (deps.awaitedCredit) waiting.push('billing (bootstrap credit)');
    const ready = redis && db && waiting.length === 0;
    const state = (p: string) => (live.includes(p) ? 'live' : deps.directory.wasLive(p) ? 'lost' : 'waiting');
    if (!ready) reply.header('retry-after', '1');
    return reply.code(ready ? 200 : 503).send({
      status: ready ? 'ready' : 'not ready',
      redis: redis ? 'ok' : 'down',
      postgres: db ? 'ok' : 'down',
      pools: live,
      expected: Object.fromEntries([...new Set([...expected, ...live])].map((p) => [p, state(p)])),
      ...(waiting.length > 0 ? { waiting_for: waiting } : {}),
    });
  });

  await app.register(async (v1) => {
    defaultAuth(v1, 'key');
    registerIdempotency(v1, deps, attachToRunningChat(deps), async (req, path, id) => {
      if (path === '/v1/jobs') return submittedAnswer(deps, req, id);
      const b = await ownedOpenAIBatch(deps, principalOf(req).accountId, id);
      return b ? { status: 200, body: batchView(b) } : undefined;
    });
    await chatRoutes(v1, deps);
    await messagesRoutes(v1, deps);
    await responsesRoutes(v1, deps);
    await embeddingsRoutes(v1, deps);
    await jobRoutes(v1, deps);
    // Multipart parsing is registered in the files routes' own scope only. Each of these APIs needs
    // its key scope (a key with no scopes holds them all); inference needs `chat` besides.
    await v1.register(async (f) => {
      defaultScope(f, 'files');
      await fileRoutes(f, deps);
    });
    await v1.register(async (b) => {
      defaultScope(b, 'batches');
      await batchRoutes(b, deps);
    });
    await modelRoutes(v1, deps);
    await streamRoutes(v1, deps);
    await streamTokenRoutes(v1, deps);
    await v1.register(usageRoutes({ db: deps.db }));
  });
  await app.register(
    adminRoutes({
      db: deps.db,
      // Credits are commands for billing on the credits stream (only billing writes money).
      redis: deps.redis,
      keys: deps.keys,
      // This process at once, then every other ingress process (create-deps.ts listens): each
      // forgets the key and closes its sockets.
      onRevoked: async (keyId) => {
        deps.auth.revoked(keyId);
        await deps.redis.publish(deps.keys.revocations, keyId);
      },
    }),
  );
  await app.register(async (admin) => providerAdminRoutes(admin, deps));
  await app.register(async (admin) => adminSessionRoutes(admin, adminToken, adminSessions));
  await registerQueueBoard(app, deps);
  await app.register(async (admin) => adminViewRoutes(admin, deps));
  await registerConsole(app);
  return app;
}
