import { once } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { buildReply, countPromptTokens, parseDirective } from './content.ts';
import { BodyError, readJson, retryCount, sendJson, untilClosed, wait } from './http.ts';
import { modelWindow, resolveModel } from './models.ts';
import { type ErrorKind, isErrorKind, type Protocol, type RenderCtx, type SseEvent } from './protocol.ts';
import type { FakeState } from './state.ts';
import type { CallRecord, Directive, Fault } from './types.ts';

/** Logs a call as it arrives (status 0, no tokens yet) with the provider's style of request id. */
export function beginCall(
  deps: ServeDeps,
  p: Protocol,
  req: IncomingMessage,
  url: URL,
  model: string | undefined,
): CallRecord {
  return deps.state.record({
    provider: p.id,
    path: url.pathname,
    model: model ?? null,
    stream: false,
    status: 0,
    promptTokens: 0,
    completionTokens: 0,
    cachedTokens: 0,
    reasoningTokens: 0,
    at: Date.now(),
    requestId: deps.ids(p.id === 'anthropic' ? 'req_011C' : 'req_'),
    retryCount: retryCount(req),
  });
}

export interface ServeDeps {
  state: FakeState;
  ids: (prefix: string) => string;
}

const DEFAULT_AFTER_CHUNKS = 2;
const DEFAULT_RETRY_AFTER_MS = 1000;
const DEFAULT_SLOW_CHUNK_MS = 500;
const DEFAULT_HUGE_BYTES = 4 * 1024 * 1024;
const INBAND_PAUSE_MS = 15;
/** The shortest prefix the fake caches: Anthropic's smallest minimum (Sonnet, Opus); shorter ones are not cached. */
const PROMPT_CACHE_MIN_TOKENS = 1024;

/** Serves one generation request: auth, parse, model, limits, faults, then the reply or stream. */
export async function serveGenerate(
  p: Protocol,
  deps: ServeDeps,
  req: IncomingMessage,
  res: ServerResponse,
  url: URL,
  pathModel?: string,
): Promise<void> {
  const { state } = deps;
  const config = state.config[p.id];
  const limits = state.limits[p.id];
  const rec = beginCall(deps, p, req, url, pathModel);
  const { requestId } = rec;
  const fail = (e: ErrorKind) => {
    const r = p.error(e, requestId);
    rec.status = r.status;
    sendJson(res, r.status, r.body, { ...p.headers(requestId, limits, config), ...r.headers });
  };

  const authError = p.auth(req, url);
  let body: unknown;
  try {
    body = await readJson(req);
  } catch (e) {
    if (authError) return fail(authError);
    return fail({ kind: 'bad_request', message: e instanceof BodyError ? e.message : String(e) });
  }
  if (authError) return fail(authError);
  const parsed = p.parse(body, url, pathModel);
  if (isErrorKind(parsed)) return fail(parsed);
  rec.model = parsed.model;
  rec.stream = parsed.stream;

  const served = resolveModel(p.id, config.models, parsed.model);
  if (!served) return fail({ kind: 'model_not_found', model: parsed.model });

  let directive: Directive | undefined;
  try {
    directive = parseDirective(parsed.conversation.lastUserText);
  } catch (e) {
    return fail({ kind: 'bad_request', message: (e as Error).message });
  }
  // The rate limit comes first, so a request it refuses does not use up a scripted fault.
  const waitMs = limits.requests.take(1);
  if (waitMs > 0) return fail({ kind: 'rate_limit', retryAfterMs: waitMs, limit: config.rpm, model: served });
  // OpenAI counts a request's prompt and its output cap against the TPM: one that needs more than a
  // whole minute's tokens is refused at once ("Request too large"), with no wait that would help.
  // Only when the fake enforces limits (an rpm is set); before the faults, like the rate limit.
  const requested = countPromptTokens(parsed.conversation) + (parsed.conversation.maxTokens ?? 0);
  if (p.id === 'openai' && limits.requests.enforce && requested > limits.tokens.capacity)
    return fail({ kind: 'request_too_large', limit: limits.tokens.capacity, requested, model: served });

  const fault: Fault | undefined = directive?.fault
    ? (directive as Fault)
    : state.takeFault(p.id, parsed.model, served);
  if (fault) rec.fault = fault.fault;

  const reply = buildReply(parsed.conversation, config.tokens, directive);
  const prefix = parsed.conversation.cachePrefix;
  if (prefix && prefix.tokens >= PROMPT_CACHE_MIN_TOKENS && !fault) {
    // Anthropic's prompt caching: a prefix seen within its TTL is read from the cache (and its TTL
    // renewed); otherwise it is written to it. Both are billed at their own prices.
    const tokens = Math.min(prefix.tokens, reply.promptTokens);
    if (state.promptCache.hit(prefix.key, prefix.ttlMs))
      reply.cachedTokens = Math.max(reply.cachedTokens, tokens);
    else {
      reply.cacheWriteTokens = tokens - Math.min(tokens, reply.cachedTokens);
      if (prefix.ttlMs >= 3_600_000) reply.cacheWrite1hTokens = reply.cacheWriteTokens;
    }
  }

  limits.tokens.take(reply.promptTokens + reply.completionTokens);
  limits.input.take(reply.promptTokens - reply.cachedTokens);
  limits.output.take(reply.completionTokens);

  if (!(await wait(config.firstByteMs, res))) return;

  const window = modelWindow(served).input;
  if (p.id !== 'llama' && reply.promptTokens > window) {
    return fail({ kind: 'context_length', tokens: reply.promptTokens, limit: window, model: served });
  }
  switch (fault?.fault) {
    case '429':
      return fail({
        kind: 'rate_limit',
        retryAfterMs: fault.retryAfterMs ?? DEFAULT_RETRY_AFTER_MS,
        limit: config.rpm || 500,
        model: served,
      });
    case '500':
      return fail({ kind: 'server' });
    case '503':
      return fail({ kind: 'unavailable' });
    case '529':
      return fail(p.id === 'anthropic' ? { kind: 'overloaded' } : { kind: 'unavailable' });
    case '400':
      return fail({ kind: 'bad_request', message: 'fake: scripted invalid request.', param: 'messages' });
    case 'context_length':
      return fail({ kind: 'context_length', tokens: window + 1000, limit: window, model: served });
    case 'hang_before_headers':
      return untilClosed(res);
    case 'inband_error':
      if (!parsed.stream) return fail(p.inbandAsStatus);
  }

  const ctx: RenderCtx = {
    id: requestId.replace(/^req_(011C)?/, ''),
    created: Math.floor(Date.now() / 1000),
    model: p.reportedModel(parsed.model, served),
    parsed,
    reply,
    config,
  };
  rec.promptTokens = reply.promptTokens;
  rec.cachedTokens = reply.cachedTokens;
  rec.reasoningTokens = reply.reasoningTokens;
  const headers = p.headers(requestId, limits, config);
  const chunkMs = fault?.fault === 'slow_stream' ? (fault.chunkMs ?? DEFAULT_SLOW_CHUNK_MS) : config.chunkMs;
  if (parsed.stream) return playStream(p, ctx, res, rec, headers, chunkMs, fault);
  return sendWhole(p, ctx, res, rec, headers, chunkMs, fault);
}

async function sendWhole(
  p: Protocol,
  ctx: RenderCtx,
  res: ServerResponse,
  rec: CallRecord,
  headers: Record<string, string>,
  chunkMs: number,
  fault: Fault | undefined,
): Promise<void> {
  // A real non-streaming call takes as long as generating the whole reply.
  if (!(await wait(chunkMs * ctx.reply.completionTokens, res))) return;
  let body = p.json(ctx);
  if (fault?.fault === 'huge_line') {
    body = `${body.slice(0, -1)},"fake_padding":"${'x'.repeat(fault.bytes ?? DEFAULT_HUGE_BYTES)}"}`;
  }
  if (fault?.fault === 'malformed_sse') body = body.slice(0, Math.floor(body.length / 2));
  rec.status = 200;
  res.writeHead(200, { 'content-type': 'application/json', ...headers });
  if (fault?.fault === 'hang_mid_stream') return untilClosed(res);
  if (fault?.fault === 'cut_mid_stream' || fault?.fault === 'cut_after_burst') {
    res.write(body.slice(0, Math.floor(body.length / 2)));
    await flushed(res);
    res.socket?.destroy();
    return;
  }
  rec.completionTokens = ctx.reply.completionTokens;
  res.end(body);
}

async function playStream(
  p: Protocol,
  ctx: RenderCtx,
  res: ServerResponse,
  rec: CallRecord,
  headers: Record<string, string>,
  chunkMs: number,
  fault: Fault | undefined,
): Promise<void> {
  const events = p.stream(ctx);
  rec.status = 200;
  // Reasoning happens before the visible reply, so it is produced (and billed) up front, as are
  // the predicted tokens the answer rejects (Predicted Outputs).
  rec.completionTokens = ctx.reply.reasoningTokens + (ctx.reply.prediction?.rejected ?? 0);
  const head = { 'content-type': p.streamContentType(ctx.parsed), 'cache-control': 'no-cache', ...headers };
  const inStream = fault && STREAM_FAULTS.has(fault.fault) ? fault : undefined;

  if (chunkMs === 0 && !inStream) {
    // Fast path for benchmarks: one write for the whole stream.
    let text = '';
    for (const e of events) text += e.text;
    rec.completionTokens = ctx.reply.completionTokens;
    res.writeHead(200, head);
    res.end(text);
    return;
  }

  res.writeHead(200, head);
  res.flushHeaders();
  // The fault fires before the terminal event at the latest, so the stream is never complete.
  const at = inStream ? Math.min(inStream.afterChunks ?? DEFAULT_AFTER_CHUNKS, events.length - 1) : -1;
  for (let i = 0; i < events.length; i++) {
    if (i > 0 && !(await wait(chunkMs, res))) return;
    if (res.destroyed) return;
    if (i === at && inStream) {
      if (inStream.fault === 'cut_after_burst') return burstThenCut(res, rec, events, i, inStream);
      const stop = await applyStreamFault(p, ctx, res, inStream);
      if (stop) return;
    }
    const e = events[i] as SseEvent;
    res.write(e.text);
    rec.completionTokens += e.tokens;
  }
  res.end();
}

const STREAM_FAULTS = new Set([
  'hang_mid_stream',
  'cut_mid_stream',
  'cut_after_burst',
  'malformed_sse',
  'inband_error',
  'huge_line',
  'unknown_event',
]);

/** Injects a fault into a stream; returns true when the stream must not continue. */
async function applyStreamFault(
  p: Protocol,
  ctx: RenderCtx,
  res: ServerResponse,
  fault: Fault,
): Promise<boolean> {
  switch (fault.fault) {
    case 'hang_mid_stream':
      await untilClosed(res);
      return true;
    case 'cut_mid_stream':
      await flushed(res);
      res.socket?.destroy();
      return true;
    case 'inband_error':
      // A short pause gives the error its own network read: js-genai only recognises a bare error object
      // that arrives alone (otherwise it still fails, with "Incomplete JSON segment").
      if (!(await wait(INBAND_PAUSE_MS, res))) return true;
      res.end(p.inbandErrorEvent(ctx));
      return true;
    case 'malformed_sse':
      res.write(p.malformedEvent(ctx));
      return false;
    case 'huge_line':
      res.write(p.hugeEvent(ctx, fault.bytes ?? DEFAULT_HUGE_BYTES));
      return false;
    case 'unknown_event':
      res.write(p.unknownEvent(ctx));
      return false;
    default:
      return false;
  }
}

/**
 * `cut_after_burst`: the events from `from` on arrive in one write, as when a provider flushes output
 * it had held back, and the connection drops right after: before the blank line that ends the
 * burst's last event (`tail: 'line'`: its data arrived whole, its end did not), or half-way through
 * the event after the burst (`tail: 'half'`). The terminal event never comes. The log counts the
 * tokens of every event whose data arrived whole (the half event's do not reach the client).
 */
async function burstThenCut(
  res: ServerResponse,
  rec: CallRecord,
  events: SseEvent[],
  from: number,
  fault: Fault,
): Promise<void> {
  const want = fault.burstTokens ?? Number.POSITIVE_INFINITY;
  let to = from;
  let tokens = 0;
  // Up to the event that completes `burstTokens`, and never the terminal event.
  while (to < events.length - 1 && tokens < want) {
    tokens += (events[to] as SseEvent).tokens;
    to++;
  }
  let text = events
    .slice(from, to)
    .map((e) => e.text)
    .join('');
  if (fault.tail === 'half') {
    const next = (events[to] as SseEvent).text;
    text += next.slice(0, Math.floor(next.length / 2));
  } else if (text.endsWith('\r\n\r\n')) text = text.slice(0, -2);
  else if (text.endsWith('\n\n')) text = text.slice(0, -1);
  if (text) res.write(text);
  rec.completionTokens += tokens;
  await flushed(res);
  res.socket?.destroy();
}

/** Lets written data reach the socket (writes are corked until the next tick) before a deliberate cut. */
async function flushed(res: ServerResponse): Promise<void> {
  if (res.writableNeedDrain) await once(res, 'drain');
  await new Promise((r) => setImmediate(r));
}
