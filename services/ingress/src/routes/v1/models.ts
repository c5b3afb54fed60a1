import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { GatewayError } from '@faregate/contracts/errors';
import type { IngressDeps } from '../../deps.ts';
import { principalOf } from '../../plugins/auth.ts';
import { MAX_PARAM_CHARS, anthropicShaped, paramTooLong } from '../../plugins/errors.ts';
import { autoAllowed, type ListedModel } from '../../routing/router.ts';
import { type Listed, anthropicModel, anthropicPage } from './models-anthropic.ts';

function view(l: ListedModel) {
  const e = l.entry;
  return {
    id: l.id,
    object: 'model',
    created: e.created,
    owned_by: e.provider,
    // Faregate extensions (ignored by OpenAI clients).
    provider: e.provider,
    context_window: e.contextWindow,
    max_output_tokens: e.maxOutputTokens,
    capabilities: e.capabilities,
    pricing: e.price
      ? {
          currency: 'USD',
          unit: '1M tokens',
          input: e.price.inputPerM,
          cached_input: e.price.cachedInputPerM ?? null,
          cache_write: e.price.cacheWritePerM ?? null,
          output: e.price.outputPerM,
          ...(e.selfHosted && e.price.inputPerM === '0' && e.price.outputPerM === '0'
            ? { note: 'self-hosted: priced at zero unless configured' }
            : {}),
        }
      : null,
    ...(e.fake ? { fake: true } : {}),
    routable: l.routable,
    ...(l.resolvesTo === undefined ? {} : { resolves_to: l.resolvesTo }),
    ...(l.reason === undefined ? {} : { reason: l.reason }),
  };
}

/** Anthropic's paging (`limit`, `after_id`, `before_id`) is checked when the answer is Anthropic's. */
const ListQuery = z.object({
  all: z.enum(['true', 'false']).optional(),
  limit: z.unknown().optional(),
  after_id: z.unknown().optional(),
  before_id: z.unknown().optional(),
});

/**
 * Anthropic's SDKs call these routes too (`models.list`, `models.retrieve`) and always send
 * `anthropic-version` (OpenAI's never do): then the answer, errors included, is Anthropic's shape.
 */
const config = { errorShape: 'anthropic-when-versioned' } as const;

/**
 * `auto` (cost-based routing) is a name a caller can use, so it is listed: what it can reach is the
 * union of the routable models (the largest context window and output cap, every capability); it has
 * no price of its own (each request pays the model chosen).
 */
function autoView(listed: ListedModel[]) {
  const entries = listed
    .filter((l) => l.routable && !l.entry.capabilities.includes('embeddings'))
    .map((l) => l.entry);
  return {
    id: 'auto',
    object: 'model',
    created: 1_700_000_000,
    owned_by: 'faregate',
    provider: 'faregate',
    context_window: Math.max(0, ...entries.map((e) => e.contextWindow)),
    max_output_tokens: Math.max(0, ...entries.map((e) => e.maxOutputTokens)),
    capabilities: [...new Set(entries.flatMap((e) => e.capabilities))].sort(),
    pricing: null,
    routable: entries.length > 0,
    description:
      'The cheapest live, priced model that can serve each request (tools, vision, JSON schema, context).',
  };
}

/**
 * `GET /v1/models`: every model id a caller can use, as listed (OpenAI's list format): what the live
 * pools serve and is priced, the other names of those models, the routing file's aliases.
 * `?all=true` adds what is served but cannot be called, flagged `routable: false` with the reason.
 * A key limited by `allowed_models` sees only what it may call; any other model is `404`, as unknown.
 */
export async function modelRoutes(app: FastifyInstance, deps: IngressDeps): Promise<void> {
  const typed = app.withTypeProvider<ZodTypeProvider>();
  // A key limited by `allowed_models` sees only the models it may call (as OpenAI lists a project's).
  const listing = (req: FastifyRequest, all: boolean) => {
    const listed = deps.router.listing(all);
    const allowed = principalOf(req).allowedModels;
    return allowed ? deps.router.visible(listed, allowed) : listed;
  };
  // A key limited by `allowed_models` may use `auto` only when its list names it.
  const autoFor = (req: FastifyRequest) => autoAllowed(principalOf(req).allowedModels);
  typed.get('/v1/models', { schema: { querystring: ListQuery }, config }, async (req) => {
    const listed = listing(req, req.query.all === 'true');
    const data: Listed[] = listed.map(view);
    // What auto reaches is every routable model, whatever else the key's list names (as routing does).
    if (autoFor(req)) data.push(autoView(deps.router.listing(false)));
    // Anthropic's shape pages the very list OpenAI's answers whole.
    if (anthropicShaped(req)) return anthropicPage(data, req.query);
    return { object: 'list', data };
  });
  app.get<{ Params: { '*': string } }>('/v1/models/*', { config }, async (req, reply) => {
    const name = req.params['*'];
    if (name.length > MAX_PARAM_CHARS) {
      paramTooLong(req, reply);
      return reply;
    }
    const shaped = (m: Listed) => (anthropicShaped(req) ? anthropicModel(m) : m);
    if (name === 'auto' && autoFor(req)) return shaped(autoView(deps.router.listing(false)));
    const listed = listing(req, true);
    const l =
      listed.find((x) => x.id === name) ??
      // A bare name: the first provider that serves it.
      listed.find((x) => x.id.slice(x.id.indexOf('/') + 1) === name);
    if (!l)
      throw new GatewayError({
        code: 'model_not_found',
        message: `The model '${name}' does not exist`,
        param: 'model',
      });
    return shaped(view(l));
  });
}
