import { createServer, type Server } from 'node:http';
import { once } from 'node:events';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { until } from '@faregate/testing/env';
import { type Stack, startStack } from './support/stack.ts';

/**
 * Traces: with an OTLP endpoint configured, one request is one trace across processes — the
 * ingress's server span (under the caller's traceparent), the queue wait, the worker's provider call
 * with GenAI attributes, and billing's settlement — exported over OTLP/HTTP. Prompts never in spans.
 */

interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes?: Array<{ key: string; value: Record<string, unknown> }>;
}
interface Received {
  service: string;
  span: OtlpSpan;
}

let stack: Stack;
let collector: Server;
const received: Received[] = [];
const bodies: string[] = [];

beforeAll(async () => {
  // A minimal OTLP/HTTP (JSON) collector: what the exporters post to /v1/traces.
  collector = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => {
      body += c;
    });
    req.on('end', () => {
      bodies.push(body);
      const doc = JSON.parse(body) as {
        resourceSpans?: Array<{
          resource?: { attributes?: Array<{ key: string; value: { stringValue?: string } }> };
          scopeSpans?: Array<{ spans?: OtlpSpan[] }>;
        }>;
      };
      for (const rs of doc.resourceSpans ?? []) {
        const service =
          rs.resource?.attributes?.find((a) => a.key === 'service.name')?.value.stringValue ?? '';
        for (const ss of rs.scopeSpans ?? [])
          for (const span of ss.spans ?? []) received.push({ service, span });
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{}');
    });
  });
  collector.listen(0, '127.0.0.1');
  await once(collector, 'listening');
  const { port } = collector.address() as { port: number };
  stack = await startStack({
    env: { OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}`, OTEL_BSP_SCHEDULE_DELAY: '100' },
  });
}, 90_000);

afterAll(async () => {
  await stack?.stop();
  collector?.close();
});

const attr = (s: OtlpSpan, key: string) => {
  const v = s.attributes?.find((a) => a.key === key)?.value;
  return v ? (v.stringValue ?? v.intValue ?? v.boolValue ?? v.doubleValue ?? v.arrayValue) : undefined;
};

describe('traces', () => {
  it('one request is one trace: ingress → queue wait → provider call (GenAI attributes) → settlement', async () => {
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const parent = '00f067aa0ba902b7';
    const secret = 'the secret prompt text 8151';
    const client = new OpenAI({
      apiKey: stack.apiKey,
      baseURL: `${stack.url}/v1`,
      maxRetries: 0,
      defaultHeaders: { traceparent: `00-${traceId}-${parent}-01` },
    });
    const answer = await client.chat.completions.create({
      model: 'openai/gpt-4o-mini',
      messages: [{ role: 'user', content: secret }],
      max_tokens: 50,
    });
    const spans = await until(
      () => {
        const mine = received.filter((r) => r.span.traceId === traceId);
        const names = mine.map((r) => r.span.name);
        return (
          names.includes('POST /v1/chat/completions') &&
          names.some((n) => n.startsWith('chat ')) &&
          names.includes('settle usage') &&
          names.some((n) => n.startsWith('queue wait')) &&
          mine
        );
      },
      { timeoutMs: 20_000, what: 'the spans of all three services' },
    );
    const byName = (p: string) => spans.find((r) => r.span.name.startsWith(p));
    const server = byName('POST /v1/chat/completions');
    const call = byName('chat ');
    const settle = byName('settle usage');
    const wait = byName('queue wait');
    expect(server?.service).toBe('faregate-ingress');
    expect(call?.service).toBe('faregate-worker-openai');
    expect(settle?.service).toBe('faregate-billing');
    expect(wait?.service).toBe('faregate-worker-openai');
    // The ingress span continues the caller's trace; the others hang under the ingress span.
    expect(server?.span.parentSpanId).toBe(parent);
    expect(call?.span.parentSpanId).toBe(server?.span.spanId);
    expect(settle?.span.parentSpanId).toBe(server?.span.spanId);
    expect(attr(server?.span as OtlpSpan, 'http.route')).toBe('/v1/chat/completions');
    expect(Number(attr(server?.span as OtlpSpan, 'http.response.status_code'))).toBe(200);
    // OpenTelemetry's GenAI conventions on the provider call.
    const c = call?.span as OtlpSpan;
    expect(c.kind).toBe(3); // CLIENT
    expect(attr(c, 'gen_ai.operation.name')).toBe('chat');
    expect(attr(c, 'gen_ai.provider.name')).toBe('openai');
    expect(attr(c, 'gen_ai.request.model')).toBe('gpt-4o-mini');
    expect(Number(attr(c, 'gen_ai.request.max_tokens'))).toBe(50);
    expect(Number(attr(c, 'gen_ai.usage.input_tokens'))).toBe(answer.usage?.prompt_tokens);
    expect(Number(attr(c, 'gen_ai.usage.output_tokens'))).toBe(answer.usage?.completion_tokens);
    expect(Number(attr(settle?.span as OtlpSpan, 'gen_ai.usage.output_tokens'))).toBe(
      answer.usage?.completion_tokens,
    );
    // Metadata only: the prompt and the answer are in no span of any service.
    const all = bodies.join('\n');
    expect(all).not.toContain(secret);
    expect(all).not.toContain(answer.choices[0]?.message.content ?? 'no answer');
  });

  it('a request without a traceparent starts its own trace; a malformed one is ignored', async () => {
    const r = await fetch(`${stack.url}/v1/models`, {
      headers: { authorization: `Bearer ${stack.apiKey}`, traceparent: '00-zzzz-not-valid-01' },
    });
    expect(r.status).toBe(200);
    const span = await until(() => received.find((x) => x.span.name === 'GET /v1/models')?.span, {
      timeoutMs: 10_000,
      what: 'the models span',
    });
    expect(span.traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(span.parentSpanId ?? '').toBe('');
  });
});
