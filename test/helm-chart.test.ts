import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import * as keda from '@kubernetes-models/keda/keda.sh/v1alpha1';
import * as monitoring from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1';
import * as apps from 'kubernetes-models/apps/v1';
import * as batch from 'kubernetes-models/batch/v1';
import * as policy from 'kubernetes-models/policy/v1';
import * as core from 'kubernetes-models/v1';
import { parseAllDocuments } from 'yaml';
import { ensureHelm } from '../deploy/helm/ensure-helm.ts';

/**
 * The Helm chart (deploy/helm/faregate), rendered and linted by the real `helm` binary (Helm v4, from
 * an npm package: deploy/helm/ensure-helm.ts) with its default values and with others, and checked
 * for what a deployment relies on: one worker Deployment per pool, secrets only by reference, the
 * services' own probes, a drain that fits in the grace period, PDBs, the migration hook, the
 * ServiceMonitor and the KEDA ScaledObjects. Every rendered object is also validated against its
 * schema (Kubernetes' OpenAPI schemas, KEDA's and the Prometheus Operator's CRDs, from the
 * `kubernetes-models` packages), as an API server would before accepting it.
 */

const root = fileURLToPath(new URL('..', import.meta.url));
const chart = join(root, 'deploy/helm/faregate');
const run = promisify(execFile);
let helm: string;

type Obj = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  // biome-ignore lint/suspicious/noExplicitAny: rendered manifests are checked field by field below
  spec?: any;
  data?: Record<string, string>;
};
type EnvVar = { name: string; value?: string; valueFrom?: { secretKeyRef?: { name: string; key: string } } };

beforeAll(async () => {
  helm = ensureHelm();
}, 300_000);

function valuesFile(values: unknown): string {
  const file = join(mkdtempSync(join(tmpdir(), 'faregate-values-')), 'values.json');
  writeFileSync(file, JSON.stringify(values));
  return file;
}

async function render(values: unknown = {}, release = 'fg'): Promise<Obj[]> {
  const { stdout } = await run(helm, ['template', release, chart, '-n', 'llm', '-f', valuesFile(values)], {
    maxBuffer: 64 * 1024 * 1024,
  });
  return parseAllDocuments(stdout)
    .map((d) => d.toJS() as Obj | null)
    .filter((o): o is Obj => o !== null);
}

/** The error helm prints for values the chart refuses. */
async function refusal(values: unknown): Promise<string> {
  try {
    await render(values);
  } catch (e) {
    return String((e as { stderr?: string }).stderr);
  }
  throw new Error('the chart rendered values it should refuse');
}

const byKind = (objs: Obj[], kind: string) => objs.filter((o) => o.kind === kind);
const named = (objs: Obj[], kind: string, name: string) => {
  const o = objs.find((x) => x.kind === kind && x.metadata.name === name);
  if (!o)
    throw new Error(`no ${kind} ${name} in ${objs.map((x) => `${x.kind}/${x.metadata.name}`).join(', ')}`);
  return o;
};
const container = (d: Obj) => d.spec.template.spec.containers[0];
const env = (d: Obj): EnvVar[] => container(d).env;
const envValue = (d: Obj, name: string) => env(d).find((e) => e.name === name)?.value;
const matches = (selector: Record<string, string>, labels: Record<string, string>) =>
  Object.entries(selector).every(([k, v]) => labels[k] === v);

/** The schema models of every group/version the chart renders. */
const MODELS: Record<string, Record<string, unknown>> = {
  v1: core,
  'apps/v1': apps,
  'batch/v1': batch,
  'policy/v1': policy,
  'keda.sh/v1alpha1': keda,
  'monitoring.coreos.com/v1': monitoring,
};

/** Validates `o` against the schema of its apiVersion and kind; throws naming what is wrong. */
function validateSchema(o: Obj): void {
  const Model = MODELS[o.apiVersion]?.[o.kind];
  if (typeof Model !== 'function') throw new Error(`no schema known for ${o.apiVersion} ${o.kind}`);
  const m = new (Model as new (data: unknown) => { validate(): void })(o);
  try {
    m.validate();
  } catch (e) {
    throw new Error(`${o.kind}/${o.metadata.name} does not match its schema: ${(e as Error).message}`);
  }
}

const SECRET_NAME = /(_API_KEY|TOKEN|PASSWORD|SECRET|DATABASE_URL|REDIS_URL)$/;

/** Checks that hold for every rendering. */
function invariants(objs: Obj[]) {
  // Every object is one an API server would accept.
  for (const o of objs) validateSchema(o);
  // The chart never carries a secret: no Secret object, and every secret-like variable is a reference.
  expect(byKind(objs, 'Secret')).toEqual([]);
  const deployments = byKind(objs, 'Deployment');
  const job = byKind(objs, 'Job');
  for (const d of [...deployments, ...job]) {
    for (const e of env(d)) {
      if (SECRET_NAME.test(e.name)) {
        expect(e.value, `${d.metadata.name} ${e.name}`).toBeUndefined();
        expect(e.valueFrom?.secretKeyRef?.name, `${d.metadata.name} ${e.name}`).toBeTruthy();
      }
    }
    // Every command runs a file of this repository (the image is the repository's Dockerfile).
    const cmd: string[] = container(d).command;
    expect(cmd[0]).toBe('node');
    expect(existsSync(join(root, cmd[1] ?? '')), cmd[1]).toBe(true);
  }
  for (const d of deployments) {
    const pod = d.spec.template.spec;
    const c = container(d);
    const labels = d.spec.template.metadata.labels;
    expect(matches(d.spec.selector.matchLabels, labels)).toBe(true);
    // Probes on the service's own endpoints, on ports the container declares.
    const ports = new Set(c.ports.map((p: { name: string }) => p.name));
    for (const probe of ['livenessProbe', 'readinessProbe']) {
      expect(c[probe]?.httpGet?.path, `${d.metadata.name} ${probe}`).toMatch(/^\/(healthz|readyz)$/);
      expect(ports.has(c[probe].httpGet.port)).toBe(true);
    }
    // Graceful drain: preStop sleep, then SIGTERM's drain, both inside the grace period.
    const sleep = Number(c.lifecycle.preStop.exec.command[1]);
    expect(c.lifecycle.preStop.exec.command[0]).toBe('sleep');
    const drain =
      c.command[1] === 'services/worker/src/main.ts' ? Number(envValue(d, 'SHUTDOWN_TIMEOUT_MS')) / 1000 : 25;
    if (c.command[1] !== 'services/billing/src/main.ts') {
      expect(pod.terminationGracePeriodSeconds, d.metadata.name).toBeGreaterThanOrEqual(sleep + drain);
    }
    expect(c.resources.requests.cpu).toBeTruthy();
    expect(c.resources.limits.memory).toBeTruthy();
    // Exactly one PDB covers the Deployment's pods.
    const pdbs = byKind(objs, 'PodDisruptionBudget').filter((p) =>
      matches(p.spec.selector.matchLabels, labels),
    );
    expect(pdbs, d.metadata.name).toHaveLength(1);
    // Routing file mounted from the chart's ConfigMap, where FAREGATE_CONFIG points.
    const cm = pod.volumes.find((v: { name: string }) => v.name === 'routing').configMap.name;
    named(objs, 'ConfigMap', cm);
    expect(envValue(d, 'FAREGATE_CONFIG')).toBe('/etc/faregate/faregate.config.json');
    expect(d.spec.template.metadata.annotations['checksum/routing']).toMatch(/^[0-9a-f]{64}$/);
  }
  // Migrations: a pre-install/pre-upgrade hook running the repository's migration CLI.
  for (const j of job) {
    expect(j.metadata.annotations?.['helm.sh/hook']).toBe('pre-install,pre-upgrade');
    expect(j.metadata.annotations?.['helm.sh/hook-delete-policy']).toContain('before-hook-creation');
    expect(container(j).command).toEqual(['node', 'packages/db/src/migrate-cli.ts']);
    expect(j.spec.template.spec.restartPolicy).toBe('Never');
  }
}

describe('helm chart deploy/helm/faregate', () => {
  it('passes helm lint --strict with the default and with other values', async () => {
    await run(helm, ['lint', '--strict', chart]);
    await run(helm, [
      'lint',
      '--strict',
      chart,
      '-f',
      valuesFile({
        serviceMonitor: { enabled: true },
        autoscaling: { enabled: true },
        ingress: { hostPools: 'all' },
      }),
    ]);
  });

  it('the schema check refuses what an API server would: a wrong type, a missing field, a bad enum', async () => {
    const objs = await render({
      pools: [{ id: 'openai', autoscaling: { enabled: true, minReplicas: 1, maxReplicas: 4 } }],
      serviceMonitor: { enabled: true },
    });
    for (const o of objs) validateSchema(o);
    const copy = (o: Obj): Obj => JSON.parse(JSON.stringify(o));
    const d = copy(named(objs, 'Deployment', 'fg-faregate-ingress'));
    d.spec.replicas = 'three';
    expect(() => validateSchema(d)).toThrow(/Deployment\/fg-faregate-ingress does not match its schema/);
    const noImage = copy(named(objs, 'Deployment', 'fg-faregate-ingress'));
    delete noImage.spec.selector;
    expect(() => validateSchema(noImage)).toThrow(/does not match its schema/);
    const so = copy(byKind(objs, 'ScaledObject')[0] as Obj);
    so.spec.triggers = 'prometheus';
    expect(() => validateSchema(so)).toThrow(/ScaledObject/);
    const job = copy(byKind(objs, 'Job')[0] as Obj);
    job.spec.template.spec.restartPolicy = 7;
    expect(() => validateSchema(job)).toThrow(/Job/);
  });

  it('renders ingress, billing and one worker Deployment per pool with the default values', async () => {
    const objs = await render();
    invariants(objs);
    expect(
      byKind(objs, 'Deployment')
        .map((d) => d.metadata.name)
        .sort(),
    ).toEqual([
      'fg-faregate-billing',
      'fg-faregate-ingress',
      'fg-faregate-worker-anthropic',
      'fg-faregate-worker-gemini',
      'fg-faregate-worker-openai',
    ]);
    const ingress = named(objs, 'Deployment', 'fg-faregate-ingress');
    expect(container(ingress).readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'http' });
    expect(container(ingress).livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'http' });
    expect(envValue(ingress, 'EXPECTED_POOLS')).toBe('openai,anthropic,gemini');
    expect(envValue(ingress, 'METRICS_PORT')).toBe('9090');
    // Hosting is off by default: every request through a worker, no provider key in the ingress.
    expect(envValue(ingress, 'INGRESS_POOLS')).toBe('');
    expect(container(ingress).envFrom).toBeUndefined();
    const admin = env(ingress).find((e) => e.name === 'FAREGATE_ADMIN_TOKEN');
    expect(admin?.valueFrom?.secretKeyRef).toEqual({
      name: 'faregate-core',
      key: 'FAREGATE_ADMIN_TOKEN',
      optional: true,
    });
    const openai = named(objs, 'Deployment', 'fg-faregate-worker-openai');
    expect(envValue(openai, 'WORKER_PROVIDER')).toBe('openai');
    expect(envValue(openai, 'METRICS_PORT')).toBe('9092');
    expect(openai.spec.replicas).toBe(2);
    expect(container(openai).livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'metrics' });
    expect(container(openai).envFrom).toEqual([{ secretRef: { name: 'faregate-provider-keys' } }]);
    // Workers need no Postgres.
    expect(env(openai).some((e) => e.name === 'DATABASE_URL')).toBe(false);
    const billing = named(objs, 'Deployment', 'fg-faregate-billing');
    expect(envValue(billing, 'METRICS_PORT')).toBe('9091');
    // The routing file is the repository's, byte for byte.
    const cm = named(objs, 'ConfigMap', 'fg-faregate-routing');
    expect(JSON.parse(cm.data?.['faregate.config.json'] ?? '')).toEqual(
      JSON.parse(readFileSync(join(root, 'faregate.config.json'), 'utf8')),
    );
    expect(byKind(objs, 'Job')).toHaveLength(1);
    expect(byKind(objs, 'ServiceMonitor')).toEqual([]);
    expect(byKind(objs, 'ScaledObject')).toEqual([]);
  });

  it('gives every Faregate container REDIS_CLUSTER_NODES when redisClusterNodes is set, none by default', async () => {
    const deployments = (objs: Obj[]) => byKind(objs, 'Deployment');
    for (const d of deployments(await render()))
      expect(env(d).some((e) => e.name === 'REDIS_CLUSTER_NODES')).toBe(false);
    const nodes = 'redis-0.redis:6379,redis-1.redis:6379,redis-2.redis:6379';
    const objs = await render({ redisClusterNodes: nodes });
    invariants(objs);
    expect(deployments(objs)).toHaveLength(5);
    for (const d of deployments(objs))
      expect(envValue(d, 'REDIS_CLUSTER_NODES'), d.metadata.name).toBe(nodes);
  });

  it('renders other pools, a routing object, the ServiceMonitor and a ScaledObject per autoscaled pool', async () => {
    const objs = await render(
      {
        image: { repository: 'registry.example/faregate', tag: '1.2.3' },
        secrets: { core: { name: 'core-2' }, providerKeys: 'keys-2' },
        routing: { aliases: { fast: 'groq/llama-3.1-8b-instant' } },
        pools: [
          {
            id: 'groq',
            replicas: 3,
            env: { WORKER_RPM: 600 },
            resources: { requests: { cpu: '1' }, limits: { memory: '1Gi' } },
          },
          {
            id: 'vllm',
            secretName: 'vllm-keys',
            shutdownTimeoutMs: 60_000,
            terminationGracePeriodSeconds: 70,
          },
          {
            id: 'openai',
            autoscaling: { enabled: true, minReplicas: 2, maxReplicas: 30, targetBacklogPerReplica: 32 },
          },
        ],
        serviceMonitor: { enabled: true, labels: { release: 'kube-prometheus' } },
        migrations: { enabled: false },
      },
      'prod',
    );
    invariants(objs);
    const workers = byKind(objs, 'Deployment').filter((d) => d.metadata.name.includes('-worker-'));
    expect(workers.map((d) => envValue(d, 'WORKER_PROVIDER'))).toEqual(['groq', 'vllm', 'openai']);
    const groq = named(objs, 'Deployment', 'prod-faregate-worker-groq');
    expect(groq.spec.replicas).toBe(3);
    expect(envValue(groq, 'WORKER_RPM')).toBe('600');
    expect(container(groq).resources).toEqual({ requests: { cpu: '1' }, limits: { memory: '1Gi' } });
    expect(container(groq).image).toBe('registry.example/faregate:1.2.3');
    expect(container(groq).envFrom).toEqual([{ secretRef: { name: 'keys-2' } }]);
    expect(env(groq).find((e) => e.name === 'REDIS_URL')?.valueFrom?.secretKeyRef).toEqual({
      name: 'core-2',
      key: 'REDIS_URL',
    });
    const vllm = named(objs, 'Deployment', 'prod-faregate-worker-vllm');
    expect(container(vllm).envFrom).toEqual([{ secretRef: { name: 'vllm-keys' } }]);
    expect(envValue(vllm, 'SHUTDOWN_TIMEOUT_MS')).toBe('60000');
    expect(vllm.spec.template.spec.terminationGracePeriodSeconds).toBe(70);
    expect(envValue(named(objs, 'Deployment', 'prod-faregate-ingress'), 'EXPECTED_POOLS')).toBe(
      'groq,vllm,openai',
    );
    expect(
      JSON.parse(named(objs, 'ConfigMap', 'prod-faregate-routing').data?.['faregate.config.json'] ?? ''),
    ).toEqual({
      aliases: { fast: 'groq/llama-3.1-8b-instant' },
    });
    expect(byKind(objs, 'Job')).toEqual([]);

    // An autoscaled pool leaves its replica count to KEDA.
    const openai = named(objs, 'Deployment', 'prod-faregate-worker-openai');
    expect(openai.spec.replicas).toBeUndefined();
    const scaled = byKind(objs, 'ScaledObject');
    expect(scaled).toHaveLength(1);
    const so = scaled[0] as Obj;
    expect(so.apiVersion).toBe('keda.sh/v1alpha1');
    expect(so.spec.scaleTargetRef).toEqual({
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      name: openai.metadata.name,
    });
    expect(so.spec.minReplicaCount).toBe(2);
    expect(so.spec.maxReplicaCount).toBe(30);
    expect(so.spec.triggers[0].type).toBe('prometheus');
    expect(so.spec.triggers[0].metadata.query).toBe(
      'max(faregate_pool_backlog{pool="openai",namespace="llm",job="prod-faregate-ingress"})',
    );
    expect(so.spec.triggers[0].metadata.threshold).toBe('32');

    // The ServiceMonitor finds a metrics Service for the ingress, billing and each pool, each
    // selecting that component's pods, on the port each service's METRICS_PORT names.
    const [sm] = byKind(objs, 'ServiceMonitor');
    expect(sm?.metadata.labels?.release).toBe('kube-prometheus');
    expect(sm?.spec.endpoints).toEqual([expect.objectContaining({ port: 'metrics', path: '/metrics' })]);
    const scraped = byKind(objs, 'Service').filter((s) =>
      matches(sm?.spec.selector.matchLabels, s.metadata.labels ?? {}),
    );
    const portOf = new Map<string, number>();
    for (const s of scraped) {
      const port = s.spec.ports.find((p: { name: string }) => p.name === 'metrics').port;
      for (const d of byKind(objs, 'Deployment')) {
        if (matches(s.spec.selector, d.spec.template.metadata.labels)) portOf.set(d.metadata.name, port);
      }
    }
    expect(Object.fromEntries(portOf)).toEqual({
      'prod-faregate-ingress': 9090,
      'prod-faregate-billing': 9091,
      'prod-faregate-worker-groq': 9092,
      'prod-faregate-worker-vllm': 9092,
      'prod-faregate-worker-openai': 9092,
    });
  });

  it('keeps files in Postgres by default, and in an S3-compatible bucket by values (credentials by Secret)', async () => {
    const plain = named(await render(), 'Deployment', 'fg-faregate-ingress');
    expect(envValue(plain, 'FILES_STORAGE')).toBe('postgres');
    expect(envValue(plain, 'S3_BUCKET')).toBeUndefined();
    const objs = await render({
      files: {
        storage: 's3',
        s3: {
          bucket: 'fg-files',
          endpoint: 'http://minio.storage:9000',
          forcePathStyle: true,
          region: 'eu-west-1',
          credentialsSecret: 'fg-s3',
        },
      },
    });
    invariants(objs);
    const ingress = named(objs, 'Deployment', 'fg-faregate-ingress');
    expect(
      Object.fromEntries(
        ['FILES_STORAGE', 'S3_BUCKET', 'S3_PREFIX', 'S3_REGION', 'S3_ENDPOINT', 'S3_FORCE_PATH_STYLE'].map(
          (k) => [k, envValue(ingress, k)],
        ),
      ),
    ).toEqual({
      FILES_STORAGE: 's3',
      S3_BUCKET: 'fg-files',
      S3_PREFIX: 'files/',
      S3_REGION: 'eu-west-1',
      S3_ENDPOINT: 'http://minio.storage:9000',
      S3_FORCE_PATH_STYLE: 'true',
    });
    expect(container(ingress).envFrom).toEqual([{ secretRef: { name: 'fg-s3' } }]);
    expect(await refusal({ files: { storage: 's3' } })).toContain('set files.s3.bucket');
  });

  it('hosts pools in the ingress by values: all or some, with their provider keys and nothing else of theirs', async () => {
    const all = named(await render({ ingress: { hostPools: 'all' } }), 'Deployment', 'fg-faregate-ingress');
    expect(envValue(all, 'INGRESS_POOLS')).toBe('openai,anthropic,gemini');
    expect(container(all).envFrom).toEqual([{ secretRef: { name: 'faregate-provider-keys' } }]);

    const objs = await render({
      ingress: { hostPools: ['openai', 'gemini'] },
      files: { storage: 's3', s3: { bucket: 'b', credentialsSecret: 's3-creds' } },
      pools: [
        { id: 'openai', secretName: 'openai-keys' },
        { id: 'anthropic', secretName: 'anthropic-keys', env: { WORKER_RPM: '50' } },
        { id: 'gemini' },
      ],
    });
    invariants(objs);
    const some = named(objs, 'Deployment', 'fg-faregate-ingress');
    expect(envValue(some, 'INGRESS_POOLS')).toBe('openai,gemini');
    // The hosted pools' Secrets (each once), not the others'; the S3 credentials as before.
    expect(container(some).envFrom).toEqual([
      { secretRef: { name: 's3-creds' } },
      { secretRef: { name: 'openai-keys' } },
      { secretRef: { name: 'faregate-provider-keys' } },
    ]);
    expect(env(some).some((e) => e.name === 'WORKER_RPM')).toBe(false);

    expect(await refusal({ ingress: { hostPools: ['mistral'] } })).toContain(
      'ingress.hostPools: "mistral" is not a pool (pools: openai, anthropic, gemini)',
    );
    // A pool's own limit would hold for its workers and not for the ingress running its requests.
    expect(
      await refusal({
        ingress: { hostPools: 'all' },
        pools: [{ id: 'openai', env: { WORKER_RPM: '500' } }],
      }),
    ).toContain('pool "openai" sets env of its own');
    expect(await refusal({ ingress: { hostPools: 'openai' } })).toContain(
      'ingress.hostPools must be "all" or a list of pool ids',
    );
  });

  it('refuses a secret in values, a grace period shorter than the drain, scale to zero and a repeated pool', async () => {
    expect(await refusal({ pools: [{ id: 'openai', env: { OPENAI_API_KEY: 'sk-live' } }] })).toContain(
      'OPENAI_API_KEY is a secret',
    );
    expect(await refusal({ ingress: { env: { DATABASE_URL: 'postgres://u:p@db/x' } } })).toContain(
      'DATABASE_URL is a secret',
    );
    expect(await refusal({ ingress: { terminationGracePeriodSeconds: 20 } })).toContain(
      'ingress: terminationGracePeriodSeconds 20 is shorter than preStop (5s) + drain (25s)',
    );
    expect(await refusal({ pools: [{ id: 'openai', shutdownTimeoutMs: 60_000 }] })).toContain(
      'worker-openai: terminationGracePeriodSeconds 40 is shorter',
    );
    expect(await refusal({ autoscaling: { enabled: true, minReplicas: 0 } })).toContain(
      'scale to zero) is not supported',
    );
    expect(await refusal({ pools: [{ id: 'openai' }, { id: 'openai' }] })).toContain('appears twice');
    expect(await refusal({ pools: [{ id: '../x' }] })).toContain('must be a pool name');
  });
});
