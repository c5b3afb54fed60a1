import type { FastifyInstance } from 'fastify';
import { SERVED_HEADERS } from '@faregate/contracts/route';
import { SpanKind, startSpan, traceparentOf, type Tracing } from '@faregate/observability/tracing';

declare module 'fastify' {
  interface FastifyRequest {
    /** This request's span as a W3C `traceparent` (tracing on): jobs it submits carry it. */
    traceparent?: string;
  }
}

/**
 * One server span per request (tracing on), under the caller's `traceparent` if it sent one, named
 * by the matched route's template (never the raw URL); a job the request submits carries its
 * context to the worker and billing. Off: no hook at all.
 */
export function registerTracing(app: FastifyInstance, tracing: Tracing): void {
  if (!tracing.enabled) return;
  app.addHook('onRequest', (req, reply, done) => {
    const route = req.is404 ? 'unmatched' : (req.routeOptions.url ?? 'unmatched');
    const incoming = req.headers.traceparent;
    const span = startSpan(
      tracing,
      `${req.method} ${route}`,
      typeof incoming === 'string' ? incoming : undefined,
      {
        kind: SpanKind.SERVER,
        attributes: { 'http.request.method': req.method, 'http.route': route, 'url.scheme': req.protocol },
      },
    );
    req.traceparent = traceparentOf(span);
    reply.raw.once('close', () => {
      const status = reply.raw.statusCode;
      span.setAttribute('http.response.status_code', status);
      const served = req.servedModel ?? reply.getHeader(SERVED_HEADERS.model);
      if (typeof served === 'string' && served) span.setAttribute('faregate.served_model', served);
      if (status >= 500) span.setAttribute('error.type', String(status));
      span.end();
    });
    done();
  });
}
