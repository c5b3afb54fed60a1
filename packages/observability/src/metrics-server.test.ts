import { Counter, Registry } from 'prom-client';
import { afterAll, describe, expect, it } from 'vitest';
import { mergeExposition, type MetricsServer, startMetricsServer } from './metrics-server.ts';

describe('mergeExposition', () => {
  it('keeps one HELP and TYPE per family and groups its samples (BullMQ writes them per queue)', () => {
    const q = (name: string, n: number) =>
      [
        '# HELP bullmq_job_count Number of jobs in the queue by state',
        '# TYPE bullmq_job_count gauge',
        `bullmq_job_count{queue="${name}", state="waiting"} ${n}`,
        '# HELP bullmq_job_failed_total Total number of failed jobs',
        '# TYPE bullmq_job_failed_total counter',
        `bullmq_job_failed_total{queue="${name}"} 0`,
      ].join('\n');
    const out = mergeExposition([q('a', 1), q('b', 2)]).split('\n');
    expect(out.filter((l) => l.startsWith('# HELP bullmq_job_count'))).toHaveLength(1);
    expect(out.filter((l) => l.startsWith('# TYPE bullmq_job_failed_total'))).toHaveLength(1);
    const i = out.indexOf('# TYPE bullmq_job_count gauge');
    expect(out.slice(i + 1, i + 3)).toEqual([
      'bullmq_job_count{queue="a", state="waiting"} 1',
      'bullmq_job_count{queue="b", state="waiting"} 2',
    ]);
  });
});

describe('startMetricsServer', () => {
  const servers: MetricsServer[] = [];
  afterAll(async () => {
    await Promise.all(servers.map((s) => s.close()));
  });

  it('serves the registry and the extra text on /metrics, liveness on /healthz, 404 elsewhere', async () => {
    const registry = new Registry();
    new Counter({ name: 'obs_test_total', help: 'a test counter', registers: [registry] }).inc(3);
    let ok = true;
    const s = await startMetricsServer({
      registry,
      port: 0,
      host: '127.0.0.1',
      healthy: () => ok,
      extra: async () => '# TYPE extra_gauge gauge\nextra_gauge 7',
    });
    servers.push(s);
    const base = `http://127.0.0.1:${s.port}`;
    const metrics = await fetch(`${base}/metrics`);
    expect(metrics.headers.get('content-type')).toContain('text/plain');
    const text = await metrics.text();
    expect(text).toContain('obs_test_total 3');
    expect(text).toContain('extra_gauge 7');
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    ok = false;
    expect((await fetch(`${base}/healthz`)).status).toBe(503);
    expect((await fetch(`${base}/other`)).status).toBe(404);
  });
});
