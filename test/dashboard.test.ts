import { readFileSync } from 'node:fs';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { testRedis } from '@faregate/testing/env';
import { createMetrics as createBillingMetrics } from '../services/billing/src/metrics.ts';
import { makeKeys } from '@faregate/queue/keys';
import { ProviderQueues } from '@faregate/queue/queues';
import { createIngressMetrics, queueMetrics } from '../services/ingress/src/metrics.ts';
import { createWorkerMetrics } from '@faregate/pool/metrics';

/**
 * The Grafana dashboard (deploy/observability) queries only metrics the services really export: a
 * renamed metric fails here instead of leaving an empty panel.
 */

const dashboard = JSON.parse(
  readFileSync(new URL('../deploy/observability/grafana/dashboards/faregate.json', import.meta.url), 'utf8'),
) as { uid: string; panels: Array<{ type: string; title: string; targets?: Array<{ expr: string }> }> };

const { url, prefix } = testRedis();
const redis = new Redis(url, { maxRetriesPerRequest: null });
afterAll(() => redis.disconnect());

/** Every family name a registry or BullMQ writes. */
async function exported(): Promise<Set<string>> {
  const texts = await Promise.all([
    createIngressMetrics().registry.metrics(),
    createWorkerMetrics('openai').registry.metrics(),
    createBillingMetrics().registry.metrics(),
  ]);
  // BullMQ's, as the ingress serves them.
  const queues = new ProviderQueues(redis, makeKeys(prefix));
  texts.push(await queueMetrics(queues, ['openai']));
  await queues.close();
  const names = new Set<string>();
  for (const t of texts) for (const m of t.matchAll(/^# TYPE (\S+) /gm)) if (m[1]) names.add(m[1]);
  return names;
}

describe('Grafana dashboard', () => {
  it('has panels, each with queries, and every metric it queries is exported by a service', async () => {
    const names = await exported();
    const graphs = dashboard.panels.filter((p) => p.type !== 'row');
    expect(graphs.length).toBeGreaterThan(15);
    const missing: string[] = [];
    for (const p of graphs) {
      expect(p.targets?.length, p.title).toBeGreaterThan(0);
      for (const t of p.targets ?? []) {
        for (const m of t.expr.matchAll(/\b((?:faregate|billing|bullmq|nodejs|process)_[a-z0-9_]+)/g)) {
          // A histogram's series end in _bucket/_count/_sum; a gauge may be named *_count itself.
          const name = m[1] ?? '';
          if (!names.has(name) && !names.has(name.replace(/_(bucket|count|sum)$/, '')))
            missing.push(`${p.title}: ${name}`);
        }
      }
    }
    expect(missing).toEqual([]);
  });
});
