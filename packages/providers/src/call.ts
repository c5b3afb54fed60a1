import type { ChatRequest, Completion, CompletionChoice } from '@faregate/contracts/chat';
import { type Embeddings, type EmbeddingsRequest, embeddingInputs } from '@faregate/contracts/embeddings';
import { GatewayError, isGatewayError } from '@faregate/contracts/errors';
import { createAssembler } from './assemble.ts';
import { agentFor, readBounded, toHeaders } from './http.ts';
import { answerCutOff, withAnswerStatus } from './shared/errors.ts';
import type {
  ProviderAdapter,
  ProviderConfig,
  RateLimitInfo,
  StreamEvent,
  Timeouts,
  UpstreamRequest,
  HeaderReader,
} from './types.ts';

export { closeHttp } from './http.ts';

export const DEFAULT_TIMEOUTS: Timeouts = {
  connectMs: 5_000,
  firstByteMs: 60_000,
  idleMs: 30_000,
  totalMs: 600_000,
};

/** Error bodies are for classification only. */
const ERROR_BODY_LIMIT = 64 * 1024;
/**
 * A non-streaming answer (a completion, an embeddings list) larger than this is not one we relay,
 * unless its request allows more (`maxResponseBytes`: an embeddings list, sized from the request).
 */
const RESPONSE_BODY_LIMIT = 32 * 1024 * 1024;
/** After the terminal event, how long the rest of the body may take before we drop the socket. */
const DRAIN_GRACE_MS = 1_000;

export interface CallResult {
  completion: Completion;
  rateLimits: RateLimitInfo;
  status: number;
  /** ms from the call's start to the first text / reasoning / tool-call event (streams only). */
  firstTokenMs?: number;
  upstreamRequestId?: string;
}

export interface CallArgs {
  adapter: ProviderAdapter;
  config: ProviderConfig;
  apiKey?: string;
  request: ChatRequest;
  /** The provider's model id. */
  model: string;
  stream: boolean;
  signal?: AbortSignal;
  /** Every parsed stream event, as it is parsed (streams only). */
  onEvent?: (e: StreamEvent) => void;
  /** Status and headers of the upstream answer, success or not (rate-limit learning). */
  onHeaders?: (status: number, headers: HeaderReader) => void;
  timeouts?: Partial<Timeouts>;
}

class TotalTimeout extends Error {}

/**
 * One upstream chat call: build → send (keep-alive pool, timeouts, cancellation) → parse. Throws a
 * GatewayError for every failure, classified once here so the worker only decides retry vs fail.
 */
export async function callProvider(args: CallArgs): Promise<CallResult> {
  // Translation errors (unsupported parameter, …) are thrown before any I/O.
  const upstream = args.adapter.buildRequest(args.request, {
    model: args.model,
    stream: args.stream,
    config: args.config,
    apiKey: args.apiKey,
  });
  return exchange(args, upstream, async (body, headers, started) => {
    const contentType = headers.get('content-type') ?? '';
    if (!args.stream || contentType.includes('application/json')) {
      // Some compatible hosts ignore `stream: true` and answer with one JSON body: relay it as events.
      const json = await readJson(body);
      const c = oneCallAtMost(args.request, args.adapter.parseResponse(json));
      const completion = c.model ? c : { ...c, model: args.model };
      if (args.stream) for (const e of eventsOf(completion)) args.onEvent?.(e);
      return { completion };
    }
    return readStream(args, body, started);
  });
}

export interface EmbeddingsCallArgs extends Omit<CallArgs, 'request' | 'stream' | 'onEvent'> {
  request: EmbeddingsRequest;
}

export interface EmbeddingsCallResult extends Omit<CallResult, 'completion' | 'firstTokenMs'> {
  embeddings: Embeddings;
}

/**
 * One upstream embeddings call, the same exchange as a chat call (timeouts, cancellation, error
 * classification, rate-limit headers) with the adapter's embeddings operation. A protocol without
 * one (Anthropic) is a 400 naming the provider; the ingress refuses such a route before queueing.
 */
export async function callEmbeddings(args: EmbeddingsCallArgs): Promise<EmbeddingsCallResult> {
  const op = args.adapter.embeddings;
  if (!op) {
    throw new GatewayError({
      code: 'invalid_request_error',
      message: `${args.config.id} (${args.adapter.kind}) has no embeddings API`,
      param: 'model',
      retryable: false,
    });
  }
  const upstream = op.buildRequest(args.request, {
    model: args.model,
    config: args.config,
    apiKey: args.apiKey,
  });
  const inputs = embeddingInputs(args.request).length;
  const limit = Math.max(RESPONSE_BODY_LIMIT, upstream.maxResponseBytes ?? 0);
  return exchange({ ...args, stream: false }, upstream, async (body) => {
    const e = op.parseResponse(await readJson(body, limit), inputs);
    return { embeddings: e.model ? e : { ...e, model: args.model } };
  });
}

/** An upstream URL's origin and path, parsed once per distinct URL (a pool calls a handful). */
const targets = new Map<string, { origin: string; path: string }>();
function targetOf(href: string): { origin: string; path: string } {
  let t = targets.get(href);
  if (!t) {
    const url = new URL(href);
    t = { origin: url.origin, path: url.pathname + url.search };
    if (targets.size >= 1_000) targets.clear();
    targets.set(href, t);
  }
  return t;
}

/** Send `upstream`, classify a non-2xx answer, and hand a 2xx body to `read`. */
async function exchange<T>(
  args: Pick<CallArgs, 'adapter' | 'config' | 'signal' | 'onHeaders' | 'timeouts' | 'stream'>,
  upstream: UpstreamRequest,
  read: (body: Body, headers: HeaderReader, started: number) => Promise<T>,
): Promise<T & { rateLimits: RateLimitInfo; status: number; upstreamRequestId?: string }> {
  const { adapter, config } = args;
  const t: Timeouts = { ...DEFAULT_TIMEOUTS, ...config.timeouts, ...args.timeouts };
  const url = targetOf(upstream.url);
  const started = performance.now();
  // One signal for undici: the total timeout's, which the caller's abort also fires (cheaper than
  // `AbortSignal.any`; `toGatewayError` tells the two apart by the caller's own signal).
  const total = new AbortController();
  const timer = setTimeout(() => total.abort(new TotalTimeout('total timeout')), t.totalMs);
  const caller = args.signal;
  const forward = () => total.abort(caller?.reason);
  if (caller?.aborted) forward();
  else caller?.addEventListener('abort', forward, { once: true });
  const signal = total.signal;
  // The 2xx status once the provider answered with one: a failure reading its body is its answer's.
  let answered: number | undefined;
  try {
    const res = await agentFor(config, t.connectMs).request({
      origin: url.origin,
      path: url.path,
      method: upstream.method,
      headers: upstream.headers,
      body: upstream.body,
      signal,
      // A whole answer (not a stream) sends its headers once it is done: an o3 call thinking for
      // more than a minute was cut at firstByteMs, failed, or, drained after a cancel, billed
      // nothing of its reasoning. Only the total timeout (and the request's deadline) bound it.
      headersTimeout: args.stream ? t.firstByteMs : Math.max(t.firstByteMs, t.totalMs),
      bodyTimeout: t.idleMs,
    });
    const headers = toHeaders(res.headers);
    const status = res.statusCode;
    args.onHeaders?.(status, headers);
    const upstreamRequestId = headers.get('x-request-id') ?? headers.get('request-id') ?? undefined;
    const rateLimits = adapter.readRateLimits(headers);
    if (status < 200 || status >= 300) {
      // An error body cut short still leaves its status to classify by (never "unreachable").
      const text = await readBounded(res.body, ERROR_BODY_LIMIT).then(
        (r) => r.text,
        () => '',
      );
      throw adapter.classifyError(status, headers, text);
    }
    answered = status;
    const base = { rateLimits, status, ...(upstreamRequestId ? { upstreamRequestId } : {}) };
    return { ...base, ...(await read(res.body, headers, started)) };
  } catch (e) {
    throw toGatewayError(e, adapter, args.signal, total.signal, answered);
  } finally {
    clearTimeout(timer);
    caller?.removeEventListener('abort', forward);
  }
}

type Body = AsyncIterable<unknown> & {
  destroy(): void;
  read(): unknown;
  setEncoding(e: BufferEncoding): unknown;
};

/** A whole (non-streamed) JSON answer, bounded. */
async function readJson(body: Body, limit = RESPONSE_BODY_LIMIT): Promise<unknown> {
  const { text, truncated } = await readBounded(body, limit);
  if (truncated) {
    throw new GatewayError({
      code: 'upstream_error',
      message: 'provider response too large',
      retryable: false,
    });
  }
  try {
    return JSON.parse(text);
  } catch {
    throw new GatewayError({
      code: 'upstream_error',
      message: 'provider returned invalid JSON',
      retryable: true,
    });
  }
}

async function readStream(
  args: CallArgs,
  body: Body,
  started: number,
): Promise<{ completion: Completion; firstTokenMs?: number }> {
  const parser = args.adapter.createStreamParser({ model: args.model });
  // `parallel_tool_calls: false`: at most one call reaches the caller, whatever the provider sent.
  const single = args.request.parallel_tool_calls === false;
  const asm = createAssembler(args.model);
  let firstTokenMs: number | undefined;
  // A holder, not a `let`: TS does not see the closure's assignments when narrowing.
  const st: { terminal?: StreamEvent; drain?: NodeJS.Timeout } = {};
  const handle = (events: StreamEvent[]) => {
    for (const e of events) {
      if (st.terminal) return;
      if (single && e.type === 'tool_call' && e.delta.index > 0) continue;
      if (
        firstTokenMs === undefined &&
        (e.type === 'text' || e.type === 'tool_call' || e.type === 'reasoning')
      ) {
        firstTokenMs = Math.round(performance.now() - started);
      }
      asm.add(e);
      args.onEvent?.(e);
      if (e.type === 'end' || e.type === 'error') {
        st.terminal = e;
        // Keep reading briefly so the socket can return to the pool; drop it if the server lingers.
        st.drain = setTimeout(() => body.destroy(), DRAIN_GRACE_MS);
      }
    }
  };
  body.setEncoding('utf8');
  // Set when the body broke (reset, idle timeout, cancellation) before the terminal event.
  let broken: { error: unknown } | undefined;
  try {
    for await (const chunk of body) {
      if (st.terminal) continue;
      handle(parser.push(chunk as string));
      if ((st.terminal as StreamEvent | undefined)?.type === 'error') break;
    }
  } catch (e) {
    // Errors after the terminal event (our own drain cut, an idle timeout) do not change the outcome.
    if (!st.terminal) broken = { error: e };
  } finally {
    if (st.drain) clearTimeout(st.drain);
  }
  // Whether the terminal event (if any) came from flushing the parser at the end of the body.
  let atFinish = false;
  if (!st.terminal) {
    // The body ended or broke without the terminal event. What arrived is still the provider's output
    // (it bills it): parse all of it before deciding. A broken body may still hold chunks its reader
    // never took (the iterator stops at the error; `read()` still hands them over). Then the parser
    // flushes a last event whose blank line never came: parsed if its data is whole, dropped if cut.
    if (broken) {
      for (let c = body.read(); c !== null && !st.terminal; c = body.read()) handle(parser.push(c as string));
    }
    if (!st.terminal) {
      atFinish = true;
      handle(parser.finish());
    }
  }
  const terminal = st.terminal as StreamEvent | undefined;
  // A break after the terminal event arrived whole leaves a complete answer. Otherwise the break is
  // the error, unless an in-band error event arrived whole before it (it says more).
  if (broken && terminal?.type !== 'end') {
    throw terminal?.type === 'error' && !atFinish ? terminal.error : broken.error;
  }
  if (terminal?.type === 'error') throw terminal.error;
  return { completion: asm.completion(), ...(firstTokenMs === undefined ? {} : { firstTokenMs }) };
}

/**
 * `parallel_tool_calls: false` asks for at most one tool call. A provider that has no such switch
 * (Gemini) may answer with several: the first is kept, as the caller asked (the others were never
 * run by anyone; the caller sends one result back, as it expects).
 */
function oneCallAtMost(req: ChatRequest, c: Completion): Completion {
  if (req.parallel_tool_calls !== false) return c;
  const one = <T extends CompletionChoice>(ch: T): T =>
    ch.toolCalls.length > 1 ? { ...ch, toolCalls: ch.toolCalls.slice(0, 1) } : ch;
  const first = one(c);
  return c.moreChoices ? { ...first, moreChoices: c.moreChoices.map(one) } : first;
}

/** A whole completion as the events a stream would have produced (every choice, in order). */
export function eventsOf(c: Completion): StreamEvent[] {
  const out: StreamEvent[] = [{ type: 'start', upstreamId: c.upstreamId, model: c.model }];
  const choices: CompletionChoice[] = [c, ...(c.moreChoices ?? [])];
  choices.forEach((ch, i) => {
    const at = i === 0 ? {} : { choice: i };
    if (ch.reasoning) out.push({ type: 'reasoning', text: ch.reasoning, ...at });
    if (ch.reasoning && ch.reasoningSignature)
      out.push({ type: 'signature', signature: ch.reasoningSignature, ...at });
    if (ch.content) out.push({ type: 'text', text: ch.content, ...at });
    if (ch.refusal) out.push({ type: 'refusal', text: ch.refusal, ...at });
    if (ch.logprobs)
      out.push({
        type: 'logprobs',
        ...(ch.logprobs.content ? { content: ch.logprobs.content } : {}),
        ...(ch.logprobs.refusal ? { refusal: ch.logprobs.refusal } : {}),
        ...at,
      });
    ch.toolCalls.forEach((tc, index) => {
      out.push({
        type: 'tool_call',
        delta: { index, id: tc.id, type: 'function', function: tc.function },
        ...at,
      });
    });
  });
  out.push({ type: 'usage', usage: c.usage });
  choices.forEach((ch, i) => {
    out.push({
      type: 'finish',
      reason: ch.finishReason,
      ...(ch.stopSequence !== undefined ? { stopSequence: ch.stopSequence } : {}),
      ...(i === 0 ? {} : { choice: i }),
    });
  });
  out.push({ type: 'end' });
  return out;
}

/**
 * Any failure of a call as a GatewayError. `answered`: the 2xx status the provider answered with,
 * when the failure came while reading that answer's body.
 */
function toGatewayError(
  e: unknown,
  adapter: ProviderAdapter,
  callerSignal: AbortSignal | undefined,
  totalSignal: AbortSignal,
  answered?: number,
): GatewayError {
  if (callerSignal?.aborted) {
    return new GatewayError({ code: 'cancelled', message: 'request cancelled', retryable: false, cause: e });
  }
  if (isGatewayError(e)) return answered === undefined ? e : withAnswerStatus(e, answered);
  if (totalSignal.aborted) {
    return new GatewayError({
      code: 'upstream_timeout',
      message: 'provider call exceeded its total time limit',
      retryable: true,
    });
  }
  const code = (e as { code?: unknown } | null)?.code;
  if (code === 'UND_ERR_CONNECT_TIMEOUT') {
    return new GatewayError({
      code: 'upstream_timeout',
      message: 'timed out connecting to provider',
      retryable: true,
    });
  }
  if (code === 'UND_ERR_HEADERS_TIMEOUT') {
    return new GatewayError({
      code: 'upstream_timeout',
      message: 'provider did not answer in time',
      retryable: true,
    });
  }
  if (code === 'UND_ERR_BODY_TIMEOUT') {
    return new GatewayError({
      code: 'upstream_timeout',
      message: 'provider stream went idle',
      retryable: true,
    });
  }
  // Transport failure (refused, reset, DNS, TLS): the adapter's status-0 policy, without the raw
  // message (it can contain the URL, and URLs are configuration). After a 2xx the provider was
  // reached and answered: its answer was cut off, not unreachable.
  if (typeof code === 'string' && /^(UND_ERR|E[A-Z]|ERR_SSL|ERR_TLS|CERT_|UNABLE_TO)/.test(code)) {
    return answered === undefined ? adapter.classifyError(0, new Headers(), '') : answerCutOff(answered);
  }
  // Anything else is a bug (ours or an onEvent callback's): not the provider's fault, not retryable.
  return new GatewayError({
    code: 'internal_error',
    message: 'provider call failed',
    retryable: false,
    cause: e,
  });
}
