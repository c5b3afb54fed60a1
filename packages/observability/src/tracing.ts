import {
  type Attributes,
  type Context,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  type TimeInput,
  type Tracer,
  trace,
  TraceFlags,
} from '@opentelemetry/api';

/**
 * Traces (OpenTelemetry), off unless an OTLP endpoint is configured (`OTEL_EXPORTER_OTLP_ENDPOINT` or
 * `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`): then every service exports its spans over OTLP/HTTP, and a
 * request's trace runs ingress → queue wait → worker → provider call → settlement, its context
 * carried in the job and the usage event as a W3C `traceparent`. Off, the SDK is never loaded and
 * every call site checks `enabled` first: nothing is allocated per request.
 *
 * Spans carry metadata only (ids, models, token counts, statuses), never prompts or answers.
 */
export interface Tracing {
  readonly enabled: boolean;
  readonly tracer: Tracer;
  /** Flushes what is buffered and stops exporting. */
  shutdown(): Promise<void>;
}

const DISABLED: Tracing = {
  enabled: false,
  tracer: trace.getTracer('faregate-disabled'),
  shutdown: async () => {},
};

export const tracingOff = (): Tracing => DISABLED;

/** Tracing for `service` as the environment says (the standard OTEL_* variables). */
export async function startTracing(
  service: string,
  env: Record<string, string | undefined>,
): Promise<Tracing> {
  const base = env.OTEL_EXPORTER_OTLP_ENDPOINT?.replace(/\/+$/, '');
  const url = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT || (base ? `${base}/v1/traces` : undefined);
  if (!url || env.OTEL_SDK_DISABLED === 'true' || env.OTEL_TRACES_EXPORTER === 'none') return DISABLED;
  const [
    { TracerProvider, BatchSpanProcessor, ParentBasedSampler, TraceIdRatioBasedSampler },
    { OTLPTraceExporter },
    { resourceFromAttributes },
  ] = await Promise.all([
    import('@opentelemetry/sdk-trace'),
    import('@opentelemetry/exporter-trace-otlp-http'),
    import('@opentelemetry/resources'),
  ]);
  const ratio = Number(env.OTEL_TRACES_SAMPLER_ARG ?? '1');
  const delay = Number(env.OTEL_BSP_SCHEDULE_DELAY ?? '1000');
  const provider = new TracerProvider({
    resource: resourceFromAttributes({
      'service.name': env.OTEL_SERVICE_NAME || `faregate-${service}`,
      'service.namespace': 'faregate',
      'service.instance.id': `${service}-${process.pid}`,
    }),
    // A caller's sampled flag is followed; new traces are sampled at OTEL_TRACES_SAMPLER_ARG (default all).
    sampler: new ParentBasedSampler({
      root: new TraceIdRatioBasedSampler(Number.isFinite(ratio) ? Math.min(1, Math.max(0, ratio)) : 1),
    }),
    spanProcessors: [
      new BatchSpanProcessor({
        exporter: new OTLPTraceExporter({ url }),
        scheduledDelayMillis: Number.isFinite(delay) && delay > 0 ? delay : 1000,
      }),
    ],
  });
  return {
    enabled: true,
    tracer: provider.getTracer('faregate'),
    shutdown: () => provider.shutdown(),
  };
}

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/** The parent context a W3C `traceparent` names (an invalid or absent one: a new trace). */
export function contextFrom(traceparent: string | undefined): Context {
  const m = traceparent ? TRACEPARENT.exec(traceparent.trim()) : null;
  if (!m?.[1] || !m[2] || !m[3] || /^0+$/.test(m[1]) || /^0+$/.test(m[2])) return ROOT_CONTEXT;
  return trace.setSpanContext(ROOT_CONTEXT, {
    traceId: m[1],
    spanId: m[2],
    traceFlags: Number.parseInt(m[3], 16) & TraceFlags.SAMPLED,
    isRemote: true,
  });
}

/** A span's W3C `traceparent`, to carry its context to another process. */
export function traceparentOf(span: Span): string {
  const c = span.spanContext();
  return `00-${c.traceId}-${c.spanId}-${(c.traceFlags & TraceFlags.SAMPLED) === 1 ? '01' : '00'}`;
}

export interface SpanOptions {
  kind?: SpanKind;
  attributes?: Attributes;
  startTime?: TimeInput;
}

/** A span under the context a `traceparent` names. */
export function startSpan(
  tracing: Tracing,
  name: string,
  parent: string | undefined,
  opts: SpanOptions = {},
): Span {
  return tracing.tracer.startSpan(name, opts, contextFrom(parent));
}

/** Ends a span as failed with an error code (the gateway's, never a message with user content). */
export function endWithError(span: Span, code: string, at?: TimeInput): void {
  span.setAttribute('error.type', code);
  span.setStatus({ code: SpanStatusCode.ERROR, message: code });
  span.end(at);
}

/**
 * OpenTelemetry's GenAI semantic conventions for a provider call: `gen_ai.provider.name` (and the
 * older `gen_ai.system`), the operation, the requested and served model, tokens, finish reasons.
 */
export const genAi = {
  request(
    provider: string,
    model: string,
    req: { max_tokens?: number | null; temperature?: number | null },
  ): Attributes {
    const system = Object.hasOwn(GEN_AI_SYSTEM, provider) ? (GEN_AI_SYSTEM[provider] ?? provider) : provider;
    return {
      'gen_ai.operation.name': 'chat',
      'gen_ai.provider.name': system,
      'gen_ai.system': system,
      'gen_ai.request.model': model,
      ...(typeof req.max_tokens === 'number' ? { 'gen_ai.request.max_tokens': req.max_tokens } : {}),
      ...(typeof req.temperature === 'number' ? { 'gen_ai.request.temperature': req.temperature } : {}),
    };
  },
  response(r: {
    id?: string;
    model?: string;
    inputTokens?: number;
    outputTokens?: number;
    cacheReadTokens?: number;
    finishReasons?: string[];
  }): Attributes {
    return {
      ...(r.id ? { 'gen_ai.response.id': r.id } : {}),
      ...(r.model ? { 'gen_ai.response.model': r.model } : {}),
      ...(r.inputTokens !== undefined ? { 'gen_ai.usage.input_tokens': r.inputTokens } : {}),
      ...(r.outputTokens !== undefined ? { 'gen_ai.usage.output_tokens': r.outputTokens } : {}),
      ...(r.cacheReadTokens ? { 'gen_ai.usage.cache_read.input_tokens': r.cacheReadTokens } : {}),
      ...(r.finishReasons?.length ? { 'gen_ai.response.finish_reasons': r.finishReasons } : {}),
    };
  },
};

/** `gen_ai.provider.name` values the conventions define, by our pool id. */
const GEN_AI_SYSTEM: Record<string, string> = {
  openai: 'openai',
  anthropic: 'anthropic',
  gemini: 'gcp.gemini',
  vertex: 'gcp.vertex_ai',
  azure: 'azure.ai.openai',
  bedrock: 'aws.bedrock',
  groq: 'groq',
  mistral: 'mistral_ai',
  deepseek: 'deepseek',
  xai: 'xai',
};

export { SpanKind };
export type { Span };
