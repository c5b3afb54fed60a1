import type { FastifyInstance } from 'fastify';
import { GatewayError } from '@faregate/contracts/errors';
import type { IngressDeps } from '../../deps.ts';
import type { ModelEntry } from '../../routing/directory.ts';

function view(e: ModelEntry) {
  return {
    id: `${e.provider}/${e.id}`,
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
  };
}

/** `GET /v1/models`: the union of what every live pool serves, in OpenAI's list format. */
export async function modelRoutes(app: FastifyInstance, deps: IngressDeps): Promise<void> {
  app.get('/v1/models', async () => ({ object: 'list', data: deps.directory.entries.map(view) }));
  app.get<{ Params: { '*': string } }>('/v1/models/*', async (req) => {
    const name = req.params['*'];
    const slash = name.indexOf('/');
    const e =
      slash > 0
        ? deps.directory.find(name.slice(0, slash), name.slice(slash + 1))
        : deps.directory.findAll(name)[0];
    if (!e)
      throw new GatewayError({
        code: 'model_not_found',
        message: `The model '${name}' does not exist`,
        param: 'model',
      });
    return view(e);
  });
}
