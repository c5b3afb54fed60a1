import { readFileSync } from 'node:fs';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { FastifyInstance } from 'fastify';
import { createJsonSchemaTransform, jsonSchemaTransformObject } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { $ZodPipe } from 'zod/v4/core';
import { defaultAuth, type RouteAuth } from './plugins/auth.ts';

const { version } = z
  .object({ version: z.string() })
  .parse(JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')));

/** Routes that are not the API: the reference itself and the queue dashboard's own UI and endpoints. */
const UNDOCUMENTED = [/^\/docs(\/|$)/, /^\/admin\/queues(\/|$)/];

/**
 * A body schema that first checks the raw value (`withRule(z.unknown(), …).pipe(Request)`, so a
 * missing field gets OpenAI's message) documents as what it pipes into: the request's real shape.
 */
const documentPipedBodies = createJsonSchemaTransform({
  zodToJsonConfig: {
    override: (ctx) => {
      if (!(ctx.zodSchema instanceof $ZodPipe) || Object.keys(ctx.jsonSchema).length > 0) return;
      const { $schema: _, ...shape } = z.toJSONSchema(ctx.zodSchema._zod.def.out, {
        io: 'input',
        unrepresentable: 'any',
      });
      Object.assign(ctx.jsonSchema, shape);
    },
  },
});

/** The OpenAPI security requirement of a route, from the auth it declares. */
function security(auth: RouteAuth | undefined): Array<Record<string, string[]>> {
  switch (auth) {
    case 'key':
      return [{ apiKey: [] }];
    case 'key-or-stream-token':
      return [{ apiKey: [] }, { streamToken: [] }];
    case 'admin':
      return [{ adminToken: [] }, { adminSession: [] }];
    default:
      return [];
  }
}

/**
 * The API reference: OpenAPI 3.1 generated from the zod schemas the routes validate with (through
 * `fastify-type-provider-zod`), each operation's security from the auth its route declares, served
 * with Swagger UI at `/docs` (the document at `/docs/json` and `/docs/yaml`). Register before any
 * route: the generator collects routes as they are added.
 */
export async function registerDocs(app: FastifyInstance): Promise<void> {
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Faregate API',
        version,
        description:
          'One endpoint and one key for every model. OpenAI-compatible chat completions (JSON and SSE), ' +
          'async jobs and batches, a WebSocket stream protocol (GET /v1/stream), usage and admin routes. ' +
          'Errors use OpenAI\'s shape: {"error": {"message", "type", "param", "code"}}.',
      },
      components: {
        securitySchemes: {
          apiKey: {
            type: 'http',
            scheme: 'bearer',
            description: 'A Faregate API key (fg_live_…), also accepted as the x-api-key header.',
          },
          streamToken: {
            type: 'apiKey',
            in: 'query',
            name: 'token',
            description: 'A single-use stream token (POST /v1/stream/tokens), for browser WebSockets.',
          },
          adminToken: { type: 'http', scheme: 'bearer', description: 'FAREGATE_ADMIN_TOKEN.' },
          adminSession: {
            type: 'apiKey',
            in: 'cookie',
            name: 'fg_admin',
            description:
              'An admin session from POST /admin/login (browsers: the console, the queue dashboard).',
          },
        },
      },
    },
    transform: (args) => {
      const url = args.url;
      if (UNDOCUMENTED.some((re) => re.test(url))) return { schema: { hide: true }, url };
      const out = documentPipedBodies(args);
      const auth = args.route.config?.auth;
      return { ...out, schema: { ...out.schema, security: security(auth) } };
    },
    transformObject: jsonSchemaTransformObject,
  });
  await app.register(async (scope) => {
    defaultAuth(scope, 'none');
    await scope.register(swaggerUi, {
      routePrefix: '/docs',
      uiConfig: { docExpansion: 'list', deepLinking: true },
    });
  });
}
