import { Validator } from '@seriousme/openapi-schema-validator';
import OpenAI from 'openai';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { until } from '@faregate/testing/env';
import { freePort, type Stack, startStack } from './support/stack.ts';
import { sample } from './support/prometheus.ts';

/**
 * What operators see: the ingress's Prometheus metrics (requests by route, status and serving model,
 * time to first chunk, WebSockets, refusals by reason, BullMQ's queue metrics), the OpenAPI
 * reference at /docs, and Bull Board at /admin/queues behind the admin token or an admin session.
 */

let stack: Stack;
let client: OpenAI;
let metricsUrl: string;

beforeAll(async () => {
  const port = await freePort();
  stack = await startStack({ ingressEnv: { METRICS_PORT: String(port) } });
  metricsUrl = `http://127.0.0.1:${port}/metrics`;
  client = new OpenAI({ apiKey: stack.apiKey, baseURL: `${stack.url}/v1`, maxRetries: 0 });
}, 90_000);

afterAll(async () => {
  await stack?.stop();
});

const ask = [{ role: 'user' as const, content: 'hello metrics' }];

const scrape = async () => {
  const r = await fetch(metricsUrl);
  expect(r.status).toBe(200);
  return r.text();
};

describe('ingress metrics', () => {
  it('counts requests by route, status and serving model, times streams to their first chunk', async () => {
    await client.chat.completions.create({ model: 'openai/gpt-4o-mini', messages: ask });
    const stream = await client.chat.completions.create({
      model: 'openai/gpt-4o-mini',
      messages: ask,
      stream: true,
    });
    for await (const _ of stream);
    const route = '/v1/chat/completions';
    const text = await until(
      async () => {
        const t = await scrape();
        // The stream's own line is written when its socket finishes.
        return (sample(t, 'faregate_ingress_requests_total', { route, status: '200' }) ?? 0) >= 2 && t;
      },
      { what: 'both chat requests counted' },
    );
    const served = /faregate_ingress_requests_total\{[^}]*route="\/v1\/chat\/completions"[^}]*\}/.exec(
      text,
    )?.[0];
    expect(served).toContain('model="openai/gpt-4o-mini');
    expect(sample(text, 'faregate_ingress_ttft_seconds_count', { route })).toBe(1);
    expect(sample(text, 'faregate_ingress_request_duration_seconds_count', { route, status: '200' })).toBe(2);
  });

  it('counts refusals by reason, unmatched routes without their raw URL, and open WebSockets', async () => {
    const bad = new OpenAI({ apiKey: 'fg_live_not_a_key_0000', baseURL: `${stack.url}/v1`, maxRetries: 0 });
    await expect(bad.models.list()).rejects.toMatchObject({ status: 401 });
    expect((await fetch(`${stack.url}/v1/secret-path-%2e%2e-123`)).status).toBe(404);
    const ws = new WebSocket(`${stack.url.replace('http', 'ws')}/v1/stream`, {
      headers: { authorization: `Bearer ${stack.apiKey}` },
    });
    await new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    try {
      const text = await until(
        async () => {
          const t = await scrape();
          return sample(t, 'faregate_ingress_websocket_connections', {}) === 1 && t;
        },
        { what: 'the open socket' },
      );
      expect(
        sample(text, 'faregate_ingress_refusals_total', { reason: 'invalid_api_key', status: '401' }),
      ).toBe(1);
      expect(sample(text, 'faregate_ingress_requests_total', { route: 'unmatched', status: '404' })).toBe(1);
      expect(text).not.toContain('secret-path');
    } finally {
      ws.close();
    }
    await until(async () => sample(await scrape(), 'faregate_ingress_websocket_connections', {}) === 0, {
      what: 'the socket closed',
    });
  });

  it('every service serves its own /metrics: a worker and billing, scraped on their METRICS_PORT', async () => {
    const workerPort = await freePort();
    const billingPort = await freePort();
    await stack.start('worker:openai', { METRICS_PORT: String(workerPort) });
    await stack.start('billing', { METRICS_PORT: String(billingPort), BILLING_CONSUMER: 'scraped-billing' });
    const get = (port: number) =>
      until(
        async () => {
          const r = await fetch(`http://127.0.0.1:${port}/metrics`);
          return r.status === 200 && r.text();
        },
        { timeoutMs: 90_000, what: `/metrics on :${port}` },
      );
    const worker = await get(workerPort);
    expect(worker).toContain('# TYPE faregate_worker_in_flight gauge');
    expect(worker).toContain('provider="openai"');
    const billing = await get(billingPort);
    expect(billing).toContain('# TYPE billing_usage_events_total counter');
    expect(billing).toContain('# TYPE billing_usage_backlog gauge');
    // The process metrics the dashboard's event-loop and memory panels read, from every service.
    expect(worker).toContain('nodejs_eventloop_lag_p99_seconds{provider="openai"}');
    expect(billing).toContain('nodejs_eventloop_lag_p99_seconds{service="billing"}');
    expect(billing).toMatch(/^process_resident_memory_bytes\{service="billing"\} \d+/m);
  }, 180_000);

  it("serves BullMQ's queue metrics for each pool, with one HELP line per family", async () => {
    const text = await scrape();
    expect(sample(text, 'bullmq_job_count', { pool: 'openai', state: 'waiting' })).toBeGreaterThanOrEqual(0);
    expect(text.split('\n').filter((l) => l === '# TYPE bullmq_job_count gauge')).toHaveLength(1);
    // Node's own (event loop lag, heap), labelled with the service.
    expect(text).toContain('nodejs_eventloop_lag_seconds{service="ingress"}');
  });
});

describe('API reference', () => {
  it('serves an OpenAPI 3.1 document from the route schemas, with each route’s security, and Swagger UI', async () => {
    const r = await fetch(`${stack.url}/docs/json`);
    expect(r.status).toBe(200);
    const doc = (await r.json()) as {
      openapi: string;
      paths: Record<string, Record<string, { security?: unknown[]; requestBody?: unknown }>>;
    };
    expect(doc.openapi).toBe('3.1.0');
    // A valid OpenAPI 3.1 document, by the specification's own schema.
    const validation = await new Validator().validate(structuredClone(doc));
    expect(validation.errors ?? [], JSON.stringify(validation.errors)).toEqual([]);
    expect(validation.valid).toBe(true);
    const chat = doc.paths['/v1/chat/completions']?.post;
    expect(chat?.security).toEqual([{ apiKey: [] }]);
    expect(JSON.stringify(chat?.requestBody)).toContain('messages');
    expect(doc.paths['/admin/v1/providers']?.get?.security).toEqual([
      { adminToken: [] },
      { adminSession: [] },
    ]);
    expect(doc.paths['/healthz']?.get?.security).toEqual([]);
    // Neither the reference itself nor the queue dashboard's internals are API.
    expect(
      Object.keys(doc.paths).filter((p) => p.startsWith('/docs') || p.startsWith('/admin/queues')),
    ).toEqual([]);
    const ui = await fetch(`${stack.url}/docs/`);
    expect(ui.status).toBe(200);
    expect(await ui.text()).toContain('swagger');
  });
});

describe('queue dashboard', () => {
  const board = () => `${stack.url}/admin/queues`;

  it('refuses without the admin token, serves the board and its API with it', async () => {
    expect((await fetch(`${board()}/api/queues`)).status).toBe(401);
    expect(
      (await fetch(`${board()}/api/queues`, { headers: { authorization: `Bearer ${stack.apiKey}` } })).status,
    ).toBe(401);
    const auth = { authorization: `Bearer ${stack.adminToken}` };
    const page = await fetch(`${board()}`, { headers: auth });
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('Faregate queues');
    const api = await fetch(`${board()}/api/queues`, { headers: auth });
    expect(api.status).toBe(200);
    const body = (await api.json()) as { queues: Array<{ displayName?: string; name: string }> };
    expect(body.queues.map((q) => q.displayName ?? q.name)).toContain('openai');
  });

  it('a browser signs in with the token once: an HttpOnly cookie, no token in URLs, no writes from other sites', async () => {
    const wrong = await fetch(`${stack.url}/admin/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ token: 'not-the-token', next: '/admin/queues' }),
      redirect: 'manual',
    });
    expect(wrong.status).toBe(401);
    expect(wrong.headers.get('set-cookie')).toBeNull();
    // The page shown again after a wrong token is no more frameable than the first one.
    expect(wrong.headers.get('content-security-policy')).toContain("frame-ancestors 'none'");

    const login = await fetch(`${stack.url}/admin/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ token: stack.adminToken, next: 'https://evil.example/' }),
      redirect: 'manual',
    });
    expect(login.status).toBe(303);
    // No open redirect: only pages of the admin area.
    expect(login.headers.get('location')).toBe('/admin/queues');
    const setCookie = login.headers.get('set-cookie') ?? '';
    expect(setCookie).toMatch(/^fg_admin=[^;]+; Path=\/admin; HttpOnly; SameSite=Strict; Max-Age=\d+/);
    expect(setCookie).not.toContain(stack.adminToken);
    const cookie = setCookie.split(';')[0] ?? '';

    expect((await fetch(`${board()}/api/queues`, { headers: { cookie } })).status).toBe(200);
    // The session opens admin routes, not tenant routes.
    expect((await fetch(`${stack.url}/v1/models`, { headers: { cookie } })).status).toBe(401);
    // A forged or expired session is nobody.
    const forged = `fg_admin=${Math.floor(Date.now() / 1000) + 3600}.${'A'.repeat(16)}.${'A'.repeat(43)}`;
    expect((await fetch(`${board()}/api/queues`, { headers: { cookie: forged } })).status).toBe(401);
    // Writes with the cookie: only from the gateway's own pages (CSRF).
    const listed = await fetch(`${board()}/api/queues`, { headers: { cookie } });
    const { queues } = (await listed.json()) as { queues: Array<{ displayName?: string; name: string }> };
    const queue = queues.find((q) => q.displayName === 'openai')?.name ?? 'missing';
    const clean = `${board()}/api/queues/${encodeURIComponent(queue)}/clean/completed`;
    const crossSite = await fetch(clean, {
      method: 'PUT',
      headers: { cookie, origin: 'https://evil.example', 'sec-fetch-site': 'cross-site' },
    });
    expect(crossSite.status).toBe(403);
    const noOrigin = await fetch(clean, { method: 'PUT', headers: { cookie } });
    expect(noOrigin.status).toBe(403);
    const sameOrigin = await fetch(clean, {
      method: 'PUT',
      headers: { cookie, origin: stack.url, 'sec-fetch-site': 'same-origin' },
    });
    expect(sameOrigin.status).toBeLessThan(300);

    // A logout ends the session itself, not only the browser's copy: the same cookie, sent again
    // (captured, or from another tab), is nobody. Another session is not touched.
    const other = await fetch(`${stack.url}/admin/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ token: stack.adminToken }),
    });
    expect(other.status).toBe(204);
    const otherCookie = (other.headers.get('set-cookie') ?? '').split(';')[0] ?? '';
    const logout = await fetch(`${stack.url}/admin/logout`, { method: 'POST', headers: { cookie } });
    expect(logout.status).toBe(204);
    expect(logout.headers.get('set-cookie')).toMatch(/^fg_admin=; .*Max-Age=0/);
    expect((await fetch(`${board()}/api/queues`, { headers: { cookie } })).status).toBe(401);
    expect((await fetch(`${board()}/api/queues`, { headers: { cookie: otherCookie } })).status).toBe(200);
  });
});
