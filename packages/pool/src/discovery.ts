import type { DiscoveryRecord } from '@faregate/contracts/discovery';
import { BUILTIN_MODELS } from '@faregate/catalog/models';
import type { DiscoveredModel } from '@faregate/providers/types';
import { sendEach } from '@faregate/queue/redis';
import type { WorkerDeps } from './deps.ts';

const MAX_PAGES = 20;

/** Lists the provider's models (all pages) through the adapter. */
export async function listProviderModels(deps: WorkerDeps, signal?: AbortSignal): Promise<DiscoveredModel[]> {
  const { adapter, config } = deps.provider;
  const key = deps.provider.key(0);
  const out: DiscoveredModel[] = [];
  let token: string | undefined;
  for (let page = 0; page < MAX_PAGES; page++) {
    const req = adapter.listModelsRequest(config, key, token);
    const res = await fetch(req.url, { method: req.method, headers: req.headers, body: req.body, signal });
    const text = await res.text();
    if (!res.ok) throw adapter.classifyError(res.status, res.headers, text.slice(0, 65_536));
    const { models, nextPageToken } = adapter.parseModels(JSON.parse(text));
    out.push(...models);
    if (!nextPageToken) break;
    token = nextPageToken;
  }
  return out;
}

/**
 * Publishes what this pool serves, so the ingress routes to live pools only and `/v1/models`
 * shows the union. Falls back to the built-in catalog when the provider cannot list models.
 */
export async function publishDiscovery(deps: WorkerDeps): Promise<DiscoveryRecord> {
  const { config } = deps.provider;
  let source: DiscoveryRecord['source'] = 'provider';
  let models: DiscoveryRecord['models'];
  try {
    models = await listProviderModels(deps, AbortSignal.timeout(10_000));
  } catch (e) {
    deps.log.warn(
      { err: String(e) },
      'model discovery failed; publishing the built-in catalog for this provider',
    );
    source = 'catalog';
    models = BUILTIN_MODELS.filter((m) => m.provider === config.id).map((m) => ({
      id: m.id,
      contextWindow: m.contextWindow,
      maxOutputTokens: m.maxOutputTokens,
    }));
  }
  const record: DiscoveryRecord = {
    v: 1,
    provider: config.id,
    kind: config.kind,
    unsupported: [...(deps.provider.adapter.unsupported ?? [])],
    fake: config.fake === true,
    source,
    at: Date.now(),
    models,
  };
  await publishRecord(deps, record);
  return record;
}

/**
 * Writes the pool's record, which is also its liveness: every worker of the pool rewrites it every
 * `LIVENESS_INTERVAL_MS` and it lapses after three of them, so a pool whose every worker is gone or
 * frozen (SIGSTOP, a blocked event loop) stops being routed to within seconds, and its requests
 * fall back (or get the 503 of a pool with no live worker) instead of waiting for it.
 */
export async function publishRecord(deps: WorkerDeps, record: DiscoveryRecord): Promise<void> {
  // The record, then the pool in the set of pools (a reader skips a pool without a record): one
  // round trip on a single server, one command each on a Redis Cluster (different slots).
  await sendEach(deps.redis, [
    [
      'set',
      deps.keys.models(record.provider),
      JSON.stringify(record),
      'PX',
      3 * deps.config.LIVENESS_INTERVAL_MS,
    ],
    ['sadd', deps.keys.pools, record.provider],
  ]);
}
