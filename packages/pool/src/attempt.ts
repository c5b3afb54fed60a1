import type { ChatRequest, Usage } from '@faregate/contracts/chat';
import { asksReasoning, toChatCompletion, toOpenAIUsage, zeroUsage } from '@faregate/contracts/chat';
import { GatewayError } from '@faregate/contracts/errors';
import { doneBody, type FrameBody } from '@faregate/contracts/frames';
import { isBatchLine, type JobData, recordTtlSeconds } from '@faregate/contracts/jobs';
import { callUsageEvent, type JobCall, type UsageEvent } from '@faregate/contracts/usage';
import {
  endWithError,
  genAi,
  type Span,
  SpanKind,
  startSpan,
  type Tracing,
} from '@faregate/observability/tracing';
import { startAndWatchSent } from '@faregate/providers/http';
import type { HeaderReader, StreamEvent } from '@faregate/providers/types';
import { type AppendOptions, newLogCursor } from '@faregate/queue/frame-store';
import { StreamWriter } from './stream-writer.ts';
import type { Admission } from './limits/limiter.ts';
import { partialUsage, type Streamed } from './limits/estimate.ts';
import type { WorkerDeps } from './deps.ts';
import {
  countedCall,
  describeCall,
  holdIsSpent,
  holdSpent,
  type HoldSpent,
  NO_PRIOR_CALLS,
  type PriorCalls,
  priorCalls,
  recordFailedStep,
} from './hold-calls.ts';
import {
  circuitRefusal,
  decide,
  routeWithSkips,
  isProviderFailure,
  poolPauseMs,
  toGatewayError,
  type Decision,
} from './outcome.ts';
import { embeddingsUsage, toEmbeddingsList } from './embeddings.ts';
import { billCutOffCall, cutOffCallEvent, cutOffError, interruptedStep, ownerCall } from './cut-off.ts';
import { chargeRequestLimits } from '@faregate/queue/request-limits';
import type { Probe } from './limits/circuit.ts';

export type AttemptOutcome =
  | { status: 'completed' }
  /**
   * The job goes back to wait `waitMs` without using an attempt; the pool waits too (429, or a
   * limit), unless `jobOnly` (an open circuit, for a job that can wait: outcome.ts).
   */
  | { status: 'wait'; waitMs: number; jobOnly?: true }
  /** Again on this provider after the queue's backoff (the `retrying` frame is written). */
  | { status: 'retry'; error: GatewayError }
  | { status: 'already_done' }
  | { status: 'fell_back'; to: string }
  | { status: 'failed'; code: string }
  | { status: 'cancelled' };

export interface AttemptInput {
  data: JobData;
  /** 1-based, counted over the hop's intakes (runner.ts), so a re-run after a crash gets a new usage id. */
  attempt: number;
  /** This attempt may retry on the same provider if it fails retryably. */
  canRetry: boolean;
  /** A 429 may send the job back to wait (without using an attempt) rather than end it. */
  canWaitOnRateLimit: boolean;
  /** Generation may have been streamed by an earlier attempt or hop: subscribers must reset. */
  restart: boolean;
  /**
   * The job comes back after a crash: its worker's lock (BullMQ, stalled) or its lane run's lease
   * lapsed. An earlier attempt that never ended then died mid-call, and this attempt bills that call.
   * (Otherwise an attempt that has not ended may still be running, fenced, and reports its own call.)
   */
  afterCrash?: boolean;
  /**
   * The intake vouches that no other attempt can own the job yet (a fresh fast-lane entry, a batch
   * line's first start) and that a cancel may go unseen until its first write (a lane entry cannot
   * be cancelled; a batch's cancel lets lines in flight end): the attempt calls the provider without
   * claiming first, and its first write claims (refused if another attempt owns the job or it ended).
   * A cancel this process heard of (CancelRegistry) makes it claim first all the same.
   */
  speculative: boolean;
  /** The provider key admission chose. */
  keyIndex: number;
  /** Rate-limit admission to correct with the actual usage afterwards. */
  admission?: Extract<Admission, { ok: true }>;
  /** End this attempt with this error without calling the provider (e.g. gave up waiting for a limit). */
  forcedError?: GatewayError;
  /** Aborted when the intake learns the job is no longer this attempt's (a lane run that lost its take). */
  signal?: AbortSignal;
  /** Called once, right after this job's provider request was written (or when the attempt ends without one). */
  onCalling?: () => void;
  /**
   * The intake's last word right before the provider call (the lane, whose take otherwise follows
   * the call): `true` (no round trip) while the job cannot have gone to another attempt, else a
   * promise of whether it is still this attempt's (the take, sent before the call once the entry is
   * too old to be taken after it). False: it went to another attempt, and this one ends without
   * calling or writing anything. A claim does not stand in for it: a later claim takes over.
   */
  beforeCall?: () => true | Promise<boolean>;
  workerId: string;
}

const hasTokens = (u: Usage) => u.inputTokens + u.outputTokens > 0;

/** The `running` status frame waits at most this long for the first token... */
const STATUS_WAIT_MS = 50;
/** ...and this long once the provider's response headers arrived. */
const STATUS_AFTER_HEADERS_MS = 2;
/** Longest `onCalling` waits for this call's provider request to be written to its socket. */
const SENT_WAIT_MS = 5;

/**
 * One provider attempt of one job: claim → call → finish. It ends with what `decide` (outcome.ts)
 * says: done (+ final usage), a retry or a wait (for the intake to carry out), a fallback hop
 * (fallback.ts), or a final error (+ final usage). Frames, state, usage event and hold-call count
 * are written together so nothing is half-done; a call that produced tokens is billed whatever
 * happens to the attempt, even when another attempt owns the job by then.
 */
export async function runAttempt(deps: WorkerDeps, input: AttemptInput): Promise<AttemptOutcome> {
  let calling = false;
  const markCalling = () => {
    if (calling) return;
    calling = true;
    input.onCalling?.();
  };
  const span = deps.tracing?.enabled ? attemptSpan(deps.tracing, input) : undefined;
  try {
    const out = await attemptOnce(deps, input, markCalling, span);
    if (span) endAttemptSpan(span, out);
    return out;
  } catch (e) {
    if (span) endWithError(span, e instanceof GatewayError ? e.code : 'internal_error');
    throw e;
  } finally {
    markCalling();
  }
}

/**
 * The provider call's span (tracing on), in its request's trace: `chat <model>` with OpenTelemetry's
 * GenAI attributes; the first attempt of a request also records its wait in the queue.
 */
function attemptSpan(tracing: Tracing, { data, attempt, restart }: AttemptInput): Span {
  const candidate = data.plan[data.hop];
  const provider = candidate?.provider ?? 'unknown';
  const model = candidate?.model ?? 'unknown';
  if (attempt === 1 && data.hop === 0 && !restart) {
    startSpan(tracing, `queue wait ${provider}`, data.trace, {
      startTime: data.created,
      attributes: { 'faregate.request_id': data.id, 'faregate.pool': provider },
    }).end();
  }
  const op = data.op === 'embeddings' ? 'embeddings' : 'chat';
  return startSpan(tracing, `${op} ${model}`, data.trace, {
    kind: SpanKind.CLIENT,
    attributes: {
      ...genAi.request(provider, model, data.op === 'embeddings' ? {} : data.request),
      'gen_ai.operation.name': op,
      'faregate.request_id': data.id,
      'faregate.hop': data.hop,
      'faregate.attempt': attempt,
    },
  });
}

function endAttemptSpan(span: Span, out: AttemptOutcome): void {
  span.setAttribute('faregate.outcome', out.status);
  if (out.status === 'failed') endWithError(span, out.code);
  else if (out.status === 'retry') endWithError(span, out.error.code);
  else span.end();
}

async function attemptOnce(
  deps: WorkerDeps,
  input: AttemptInput,
  markCalling: () => void,
  span?: Span,
): Promise<AttemptOutcome> {
  const { data, attempt } = input;
  const candidate = data.plan[data.hop];
  if (!candidate)
    throw new GatewayError({ code: 'internal_error', message: `no route candidate at hop ${data.hop}` });
  const ttlMs = recordTtlSeconds(data, deps.config) * 1000;
  const owner = `${input.workerId}:${data.hop}:${attempt}`;
  const record = { account: data.account, model: data.requestedModel, created: data.created };
  const speculative =
    input.speculative &&
    attempt === 1 &&
    data.hop === 0 &&
    !input.restart &&
    data.replyTo !== undefined &&
    !deps.cancels.cancelledRecently(data.id);
  const claim = speculative ? record : undefined;
  const abort = new AbortController();
  /** The attempt that streamed content to an SSE caller before it died: this one ends the job. */
  let cutOffBy: string | undefined;
  if (!speculative) {
    const c = await deps.store.claim(data.id, owner, ttlMs, record, data.contentFinal === true);
    if (c.terminal || c.superseded) return { status: 'already_done' };
    if (c.cancelled) abort.abort(new GatewayError({ code: 'cancelled', message: 'cancelled by the caller' }));
    else if (c.streamedBy !== undefined) {
      cutOffBy = c.streamedBy;
      const streamed = data.plan[ownerCall(cutOffBy)?.hop ?? -1];
      abort.abort(cutOffError(streamed && `${streamed.provider}/${streamed.model}`));
    } else {
      // An attempt before this one died mid-call (its worker was killed): the provider read its
      // prompt and maybe answered; it is billed here, estimated, before this attempt calls again.
      const dead = !input.afterCrash ? undefined : (c.unended ?? unclaimedCall(data, c.previous, attempt));
      if (dead !== undefined && !dead.endsWith(`:${data.hop}:${attempt}`))
        await billCutOffCall(deps, data, dead, ttlMs);
    }
  }

  // A speculative attempt starts the job's log (nothing is written before a job's first attempt
  // when an HTTP caller waits on it) and is its only writer: the caller, if waiting in this process
  // (a pool hosted by its ingress), is handed each frame as its write leaves (LogCursor).
  const cursor = speculative ? newLogCursor() : undefined;
  const writer = new StreamWriter(deps.store, data.id, owner, ttlMs, data.replyTo, claim, {
    // A chunk's text waits for its logprobs (the adapter emits them right after it), to one frame.
    logprobs: data.op !== 'embeddings' && data.request.logprobs === true,
    cursor,
  });
  // The frames that open the attempt go out with its first token (one write, and the provider call
  // is not queued behind it), or shortly after the provider answered, or after STATUS_WAIT_MS.
  let statusTimer: NodeJS.Timeout | undefined;
  const releaseStatusIn = (ms: number) => {
    clearTimeout(statusTimer);
    statusTimer = setTimeout(() => writer.release(), ms);
  };
  const running: FrameBody & { type: 'status' } = {
    type: 'status',
    state: 'running',
    provider: candidate.provider,
    model: candidate.model,
    attempt,
  };
  /** A re-run (retry, hop, restart) reads the request's earlier calls first (`priorCalls`). */
  const rerun = input.restart || attempt > 1 || data.hop > 0;
  const opening = data.deltas && cutOffBy === undefined;
  if (opening) {
    // A restart of generation is always explicit: whatever an earlier attempt streamed is void.
    if (input.restart) writer.defer({ type: 'reset', reason: 'restart', hop: data.hop, attempt });
    writer.defer(running);
    // A re-run's `running` frame names the calls before it (`route`: an SSE caller's headers are
    // made from it), so its clock starts once they are read.
    if (!rerun) releaseStatusIn(STATUS_WAIT_MS);
  }

  let usage: Usage = zeroUsage();
  let estimated = false;
  /** The call answered in full: `usage` is the provider's final count (or the estimate of a whole answer). */
  let callAnswered = false;
  /**
   * The provider billed the call's prompt whether or not an answer comes: it began answering (a 2xx;
   * the body may then be unreadable, too large or cut, or the call cancelled), or the request was
   * sent and then cancelled before it answered (the provider read the prompt: a caller that drops a
   * whole answer it asked for pays the prompt, as a stream's caller pays for what was streamed).
   */
  let charged = false;
  /** The request was written to the provider (or SENT_WAIT_MS passed since it was issued). */
  let sentRequest = false;
  const onSent = () => {
    sentRequest = true;
    markCalling();
  };
  // What the caller was sent: what a call that ends early is billed at least.
  const streamed: Streamed = { text: '', reasoning: '' };
  const call: JobCall = {
    job: data,
    hop: data.hop,
    attempt,
    provider: candidate.provider,
    model: candidate.model,
  };
  const usageEvent = (outcome: UsageEvent['outcome'], final: boolean, at = Date.now()): UsageEvent =>
    callUsageEvent(call, usage, outcome, { final, estimated, at });
  /** What this call costs at its listed price (the figure billing settles); 0 when unpriced. */
  const callCost = (at: number) =>
    deps.prices.callCostMicros(candidate.provider, candidate.model, usage, at) ?? 0n;
  // Calls the request made before this one (a re-run reads them; a first attempt has none).
  let prior: PriorCalls = NO_PRIOR_CALLS;
  let called = false;

  /**
   * The caller's cancel (a client gone, a cancelled job or batch). It cuts the call, unless the
   * call may be reasoning unseen (`reasonsUnseen`): OpenAI reports those tokens only at the end
   * and bills them all the same, so a cut call could not be billed at cost (an outside probe had
   * o3 bill 2 output tokens for 8,002 made: ask a hard question, hang up after the first token).
   * Such a call runs on, relayed to no one, until its usage arrives (or the request's deadline),
   * and is billed as cancelled at the provider's own count.
   */
  let draining: GatewayError | undefined;
  // Only such a call gets a cancel of its own; any other is cut by the call's own controller.
  let cancel = abort;
  if (reasonsUnseen(deps, candidate, data)) {
    const drainable = new AbortController();
    drainable.signal.addEventListener(
      'abort',
      () => {
        const why = toGatewayError(drainable.signal.reason);
        if (called && !callAnswered) draining = why;
        else abort.abort(why);
      },
      { once: true },
    );
    cancel = drainable;
  }
  const unregister = deps.cancels.register(data.id, cancel);
  const onAbort = () => abort.abort(input.signal?.reason);
  if (input.signal?.aborted) onAbort();
  input.signal?.addEventListener('abort', onAbort, { once: true });
  const timer = setTimeout(
    () => abort.abort(new GatewayError({ code: 'upstream_timeout', message: 'request deadline exceeded' })),
    Math.max(1, data.deadline - Date.now()),
  );

  /**
   * The tokens this call used beyond what the request's admission counted, taken from the key's and
   * account's tokens limits (only for a request that has one). The first call of a request is
   * covered by the admission's estimate; a retry or a fallback's call by none.
   */
  const chargeLimits = () => {
    if (!data.limits || !hasTokens(usage)) return;
    const first = data.hop === 0 && attempt === 1;
    void chargeRequestLimits(
      deps.redis,
      deps.keys,
      data,
      usage.inputTokens + usage.outputTokens,
      first,
    ).catch(() => {});
  };

  /** The answer's frames, its usage event and the job's end, in one write; then the bookkeeping. */
  const succeed = async (frames: FrameBody[], at: number): Promise<AttemptOutcome> => {
    await deps.store.append(data.id, frames, {
      owner,
      claim,
      ttlMs,
      replyTo: data.replyTo,
      state: 'completed',
      usage: usageEvent('success', true, at),
      cursor,
    });
    // Bookkeeping after the answer is on its way, not in front of it.
    void deps.circuit.success().catch(() => {});
    chargeLimits();
    if (input.admission) {
      void deps.limiter.settle(input.admission, usage.inputTokens + usage.outputTokens).catch(() => {});
    }
    deps.metrics.requests.inc({ outcome: 'completed' });
    return { status: 'completed' };
  };

  const started = performance.now();
  let firstToken = 0;
  const onEvent = (e: StreamEvent) => {
    if (draining) {
      // Cancelled, running on for its count: nothing reaches the (gone) caller.
      if (e.type === 'usage') usage = e.usage;
      else if (e.type === 'reasoning') streamed.reasoning += e.text;
      else if (e.type === 'text' || e.type === 'refusal') streamed.text += e.text;
      else if (e.type === 'tool_call')
        streamed.text += (e.delta.function?.name ?? '') + (e.delta.function?.arguments ?? '');
      return;
    }
    switch (e.type) {
      case 'text':
        if (!firstToken) firstToken = performance.now();
        streamed.text += e.text;
        writer.text(e.text, e.choice);
        break;
      case 'reasoning':
        streamed.reasoning += e.text;
        writer.reasoning(e.text, e.choice);
        break;
      case 'signature':
        writer.signature(e.signature, e.choice);
        break;
      case 'redacted_thinking':
        writer.redactedThinking(e.data, e.choice);
        break;
      case 'refusal':
        streamed.text += e.text;
        writer.refusal(e.text, e.choice);
        break;
      case 'tool_call':
        if (!firstToken) firstToken = performance.now();
        streamed.text += (e.delta.function?.name ?? '') + (e.delta.function?.arguments ?? '');
        writer.toolCall(e.delta, e.choice);
        break;
      case 'logprobs':
        writer.logprobs(e, e.choice);
        break;
      case 'usage':
        usage = e.usage;
        // Told before the answer (Anthropic's message_start): the stream's opening can say it.
        if (!firstToken && e.usage.inputTokens > 0) writer.prompt(toOpenAIUsage(e.usage));
        break;
    }
    if (writer.error) abort.abort(writer.error);
  };

  /** This call is the circuit's half-open probe: its outcome, whatever it is, decides the circuit. */
  let probe: Probe | undefined;
  try {
    if (abort.signal.aborted) throw abort.signal.reason;
    if (input.forcedError) throw input.forcedError;
    // A re-run (retry, hop, restart) first checks the calls the hold covers (see hold-calls.ts); a
    // first attempt cannot have spent them.
    if (rerun) {
      prior = await priorCalls(deps, data);
      const steps = routeWithSkips(prior.route, data.attempts);
      if (steps.length > 0) running.route = steps;
      if (opening) releaseStatusIn(STATUS_WAIT_MS);
      if (holdIsSpent(data, prior.calls)) throw holdSpent(data, prior.calls);
    }
    const gate = await deps.circuit.allow();
    if (!gate) throw circuitRefusal(candidate.provider, deps.circuit.config.openMs);
    probe = typeof gate === 'object' ? gate : undefined;
    const provider = deps.provider;
    if (input.admission) await deps.limiter.touch(input.admission);
    // The last thing before the call: whatever came before it (admission, the circuit, the touch)
    // may have taken long enough for the job to have gone to another attempt meanwhile.
    const vouched = input.beforeCall?.();
    if (vouched !== undefined && vouched !== true && !(await vouched)) {
      // Another attempt owns the job (the lane's sweep queued it): no call, no frame, no usage;
      // the admission's token estimate goes back (its request slot stays counted: errs safe).
      if (input.admission) void deps.limiter.settle(input.admission, 0).catch(() => {});
      if (probe) void deps.circuit.probeEnded(false, probe).catch(() => {});
      return { status: 'already_done' };
    }
    const onHeaders = (status: number, headers: HeaderReader) => {
      if (status >= 200 && status < 300) charged = true;
      if (statusTimer) releaseStatusIn(STATUS_AFTER_HEADERS_MS);
      const info = provider.adapter.readRateLimits(headers);
      void deps.limiter.learn(input.keyIndex, info).then(
        (ms) => ms > 0 && deps.metrics.rateLimitWaits.inc({ reason: 'headers' }),
        () => {},
      );
    };
    const apiKey = provider.key(input.keyIndex);
    // The one place an operation is dispatched: an embeddings job is one whole answer (no deltas),
    // ending in its own terminal frame; everything around the call is the same as chat's.
    if (data.op === 'embeddings') {
      const { result: call, sent } = startAndWatchSent(
        () =>
          deps.embed({
            adapter: provider.adapter,
            config: provider.config,
            apiKey,
            request: data.request,
            model: candidate.model,
            signal: abort.signal,
            onHeaders,
          }),
        SENT_WAIT_MS,
      );
      called = true;
      void sent.then(onSent);
      const res = await call;
      // An async job's deferred `running` frame goes out before the answer, never after it.
      await writer.flush();
      ({ usage, estimated } = embeddingsUsage(data.request, res.embeddings.inputTokens));
      callAnswered = true;
      deps.metrics.upstreamLatency.observe((performance.now() - started) / 1000);
      const at = Date.now();
      span?.setAttributes(genAi.response({ model: res.embeddings.model, inputTokens: usage.inputTokens }));
      const cost = prior.calls.reduce((sum, c) => sum + c.costMicros, callCost(at));
      const result = toEmbeddingsList(candidate, data.request, res.embeddings, usage, cost);
      const route = routeWithSkips(
        [...prior.route, { provider: candidate.provider, model: candidate.model, status: 200, code: 'ok' }],
        data.attempts,
      );
      // `result` last, as on `done`: the ingress relays its bytes as they are (done-frame.ts).
      return await succeed([{ type: 'embeddings', route, result }], at);
    }
    // `deps.call` returns before the request is on the wire (undici writes a request on a reused
    // keep-alive socket from a later setImmediate). Whatever `onCalling` starts (the lane's take and
    // next pop: Redis writes, and their replies read first) would go out in front of the provider
    // call; it waits until this call's own request was written instead (at most SENT_WAIT_MS).
    const { result: call, sent } = startAndWatchSent(
      () =>
        deps.call({
          adapter: provider.adapter,
          config: provider.config,
          apiKey,
          request: requestFor(deps, candidate, data.request),
          model: candidate.model,
          stream: data.deltas,
          signal: abort.signal,
          onEvent: data.deltas ? onEvent : undefined,
          onHeaders,
        }),
      SENT_WAIT_MS,
    );
    called = true;
    void sent.then(onSent);
    const res = await call;
    usage = res.completion.usage;
    if (!hasTokens(usage)) {
      // The provider reported no usage (a stream without its usage chunk): bill the estimate.
      const c = res.completion;
      const answered: Streamed = data.deltas
        ? streamed
        : {
            // Every choice (n > 1) was generated, and is billed.
            text: [c, ...(c.moreChoices ?? [])]
              .map(
                (ch) =>
                  (ch.content ?? '') +
                  (ch.refusal ?? '') +
                  ch.toolCalls.map((t) => t.function.name + t.function.arguments).join(''),
              )
              .join(''),
            reasoning: [c, ...(c.moreChoices ?? [])].map((ch) => ch.reasoning ?? '').join(''),
          };
      ({ usage, estimated } = partialUsage(data.request, usage, answered));
    }
    callAnswered = true;
    // Drained after the caller's cancel: `usage` is the provider's count; the attempt ends cancelled.
    if (draining) throw draining;
    deps.metrics.upstreamLatency.observe((performance.now() - started) / 1000);
    if (firstToken) deps.metrics.ttft.observe((firstToken - started) / 1000);
    await writer.flush();
    // The answer names what served it, the calls made on the way, and what the request cost: this
    // call and every earlier one that produced tokens, each at its listed price, as billing settles.
    const at = Date.now();
    span?.setAttributes(
      genAi.response({
        id: res.completion.upstreamId,
        model: res.completion.model,
        inputTokens: usage.inputTokens,
        outputTokens: usage.outputTokens,
        cacheReadTokens: usage.cachedInputTokens,
        finishReasons: [res.completion.finishReason],
      }),
    );
    const cost = prior.calls.reduce((sum, c) => sum + c.costMicros, callCost(at));
    const result = toChatCompletion(
      data.id,
      candidate,
      Math.floor(data.created / 1000),
      // With the usage billed: the provider's, or the estimate when it reported none (its tokens and
      // its `cost` then agree, as in the ledger). A copy only then: not on every answer's path.
      usage === res.completion.usage ? res.completion : { ...res.completion, usage },
      cost,
      // Written once in the legacy shape for a request that used `functions`: every reader of the
      // done frame (a waiting caller's raw relay, jobs, batch lines, the SSE door's top-up) gets it.
      data.request.legacy_functions === true,
    );
    // Candidates skipped on an open circuit before this one are named too, where they were in the plan.
    const route = routeWithSkips(
      [...prior.route, { provider: candidate.provider, model: candidate.model, status: 200, code: 'ok' }],
      data.attempts,
    );
    // `result` last (doneBody): the ingress relays its bytes to a chat completions caller as they are.
    const done: FrameBody = doneBody(route, result, Date.now());
    const frames: FrameBody[] = data.deltas ? [{ type: 'usage', usage: result.usage }, done] : [done];
    return await succeed(frames, at);
  } catch (raw) {
    const lostRun = input.signal?.aborted === true;
    // A drained call that hit the deadline (or broke) was still cancelled by its caller.
    const err =
      draining && !lostRun
        ? draining
        : toGatewayError(abort.signal.aborted && !lostRun ? (abort.signal.reason ?? raw) : raw);
    await writer.flush().catch(() => {});
    const lost = lostRun || isNotOwner(writer.error) || isNotOwner(raw);
    // The call ended early: it is billed at least what it streamed (the provider bills what it
    // generated), whatever happens to the attempt next. A call that answered in full (the attempt
    // failed after it, e.g. its write was refused: another attempt owns the job) is billed the
    // provider's own count. A call the provider began answering (a 2xx) but whose answer could not
    // be used, or a call cancelled after it was sent, is billed at least its prompt as estimated here
    // (the provider billed it); an embeddings call that failed otherwise produced nothing.
    if (err.code === 'cancelled' && sentRequest) charged = true;
    if (!callAnswered) {
      if (data.op !== 'embeddings')
        ({ usage, estimated } = partialUsage(data.request, usage, streamed, charged));
      else if (charged) ({ usage, estimated } = embeddingsUsage(data.request, undefined));
    }
    if (input.admission)
      void deps.limiter.settle(input.admission, usage.inputTokens + usage.outputTokens).catch(() => {});
    chargeLimits();
    if (!lost && cutOffBy === undefined && isProviderFailure(err))
      void deps.circuit.failure().catch(() => {});
    else if (probe) {
      // Nor a success: the probe must not hold the circuit open for every caller (circuit.ts).
      const answered = err.upstreamStatus !== undefined && err.upstreamStatus < 500;
      void deps.circuit.probeEnded(answered, probe).catch(() => {});
    }
    // A call that produced tokens uses one of the calls the hold covers (hold-calls.ts); it is
    // counted with its usage event. A cancelled request makes no further call: nothing to count.
    const eventAt = Date.now();
    const thisCall = {
      description: describeCall(candidate, data.hop, attempt, err),
      costMicros: callCost(eventAt),
    };
    const counted =
      hasTokens(usage) && err.code !== 'cancelled' ? countedCall(data, thisCall, ttlMs) : undefined;
    // A call that was made and failed joins the request's route (what the caller is told; a Redis
    // failure here leaves the route without it rather than failing the job).
    const route =
      called && !lost && err.code !== 'cancelled'
        ? await recordFailedStep(
            deps,
            data,
            {
              provider: candidate.provider,
              model: candidate.model,
              status: err.upstreamStatus ?? null,
              code: err.code,
            },
            ttlMs,
          ).catch(() => prior.route)
        : prior.route;
    let spent: HoldSpent | undefined;
    if (counted && !lost) {
      const calls = [
        ...(prior === NO_PRIOR_CALLS ? (await priorCalls(deps, data)).calls : prior.calls),
        thisCall,
      ];
      if (holdIsSpent(data, calls)) spent = holdSpent(data, calls);
    }
    const pauseMs = lost ? 0 : poolPauseMs(err);
    if (pauseMs > 0) {
      if (err.code === 'rate_limit_exceeded') deps.metrics.upstream429.inc();
      await deps.limiter.pause(input.keyIndex, pauseMs).catch(() => {});
    }
    // The call of the attempt that died is billed here (it never wrote its usage event); a Redis
    // failure throws, and the job's next run ends it (and bills it) instead. This attempt made no
    // call: that one is the request's last, and its event the final one, written with the error
    // that ends the job (not a 0-token event for a call never made).
    const cutOffEvent =
      cutOffBy !== undefined && !lost && !called
        ? await cutOffCallEvent(deps, data, cutOffBy, true)
        : undefined;
    if (cutOffBy !== undefined && !lost && !cutOffEvent) await billCutOffCall(deps, data, cutOffBy, ttlMs);
    // ...and joins the route, so that the error names it (and the caller is told of every call billed).
    const failedRoute = cutOffEvent
      ? await recordFailedStep(deps, data, interruptedStep(cutOffEvent), ttlMs).catch(() => route)
      : route;
    const decision = decide({
      data,
      error: err,
      lost,
      canRetry: input.canRetry,
      canWait: input.canWaitOnRateLimit,
      wroteContent: writer.wroteContent || cutOffBy !== undefined,
      storedContent: writer.storedContent || cutOffBy !== undefined,
      spent,
      route: failedRoute,
      maxRateLimitWaits: deps.config.RATE_LIMIT_RETRIES,
      // A cut-off answer failed at the hop that streamed it (the job may have moved on since).
      failedHop: cutOffBy !== undefined ? ownerCall(cutOffBy)?.hop : undefined,
      now: Date.now(),
    });
    // (A cut-off answer always fails the job; should it not, the call is billed on its own.)
    if (cutOffEvent && decision.kind !== 'fail')
      await deps.store.append(data.id, [], { owner: '', ttlMs, usage: { ...cutOffEvent, final: false } });
    const write = (frames: FrameBody[], opts: Omit<AppendOptions, 'owner' | 'ttlMs' | 'replyTo' | 'claim'>) =>
      deps.store.append(data.id, frames, { owner, claim, ttlMs, replyTo: data.replyTo, cursor, ...opts });
    /** The attempt owns the job: it claimed it, or (speculative) its first write did. */
    const owns = () => !speculative || writer.writes > 0;
    return await finish(decision);

    async function finish(d: Decision): Promise<AttemptOutcome> {
      const spentUsage = counted ? { usage: usageEvent('failed', false, eventAt), call: counted } : {};
      switch (d.kind) {
        case 'complete':
          return { status: 'completed' };
        case 'lost':
          // Another attempt owns the job now: its frames and final usage are that attempt's. The
          // tokens this call produced are billed all the same (unfenced: a usage event only).
          if (counted)
            await deps.store.append(data.id, [], {
              owner: '',
              ttlMs,
              usage: usageEvent('failed', false, eventAt),
              call: counted,
            });
          return { status: 'already_done' };
        case 'cancelled':
          await write([{ type: 'error', status: err.status, error: err.toJSON() }], {
            state: 'cancelled',
            usage: usageEvent('cancelled', true, eventAt),
          });
          deps.metrics.requests.inc({ outcome: 'cancelled' });
          return { status: 'cancelled' };
        case 'wait':
          // Every end of an attempt that owns the job is recorded (`ends`), so that the next claim
          // does not take it for one that died mid-call (frame-store.claim.lua).
          if (counted || owns()) await write([], { ...spentUsage, ends: true });
          return { status: 'wait', waitMs: d.waitMs, ...(d.jobOnly ? { jobOnly: true as const } : {}) };
        case 'retry': {
          const frames: FrameBody[] = data.deltas
            ? [{ type: 'status', state: 'retrying', provider: candidate?.provider, reason: err.code }]
            : [];
          if (frames.length || counted || owns()) await write(frames, { ...spentUsage, ends: true });
          deps.metrics.retries.inc({ code: err.code });
          return { status: 'retry', error: err };
        }
        case 'fallBack': {
          const next = data.plan[d.hop];
          const frames: FrameBody[] = data.deltas
            ? [
                {
                  type: 'status',
                  state: 'fallback',
                  provider: next?.provider,
                  model: next?.model,
                  reason: err.code,
                },
              ]
            : [];
          if (frames.length || counted || owns()) await write(frames, { ...spentUsage, ends: true });
          await deps.queues.addHop(data, d.hop, d.attempts);
          deps.metrics.fallbacks.inc({ to: next?.provider ?? 'unknown' });
          return { status: 'fell_back', to: next?.provider ?? 'unknown' };
        }
        case 'fail':
          await write([{ type: 'error', status: d.error.status, error: d.error.toJSON() }], {
            state: 'failed',
            usage: cutOffEvent ?? usageEvent('failed', true, eventAt),
            ...(counted ? { call: counted } : {}),
          });
          deps.metrics.requests.inc({ outcome: 'failed' });
          return { status: 'failed', code: d.error.code };
      }
    }
  } finally {
    clearTimeout(statusTimer);
    clearTimeout(timer);
    unregister();
    input.signal?.removeEventListener('abort', onAbort);
  }
}

/**
 * The call of an attempt that died without a trace in the job's record (no owner: it called before
 * claiming, and its first write, which claims, never came): a fast-lane run whose lease lapsed
 * (`lostRun`), or a batch line's first start (speculative, `queuedSpeculative`) whose worker died.
 * Its owner as `billCutOffCall` reads it, or undefined.
 */
function unclaimedCall(data: JobData, previous: string | undefined, attempt: number): string | undefined {
  if (previous !== undefined) return undefined;
  if (data.lostRun) return `lane:${data.lostRun}`;
  if (isBatchLine(data) && data.hop === 0 && attempt === 2) return 'line:0:1';
  return undefined;
}

const isNotOwner = (e: unknown) => e instanceof Error && e.message.includes('NOTOWNER');

/**
 * The request as this candidate gets it: reasoning effort `none` is left out for a model the catalog
 * knows does not reason (OpenAI refuses `reasoning_effort` there, and not reasoning is all it does),
 * so a fallback or `auto` to such a model serves a request that asked for no reasoning.
 */
function requestFor(
  deps: WorkerDeps,
  candidate: { provider: string; model: string },
  request: ChatRequest,
): ChatRequest {
  if (request.reasoning_effort !== 'none') return request;
  const model = deps.prices.model(candidate.provider, candidate.model);
  if (!model || model.capabilities.includes('reasoning')) return request;
  const { reasoning_effort: _none, ...rest } = request;
  return rest;
}

/**
 * The call may spend tokens the caller never sees and the provider reports only at the end:
 * OpenAI's reasoning models (o-series, GPT-5) reason unseen and count it in the final usage.
 * Other protocols stream their thinking (Anthropic, self-hosted servers' reasoning_content) or
 * count it in every chunk (Gemini).
 */
function reasonsUnseen(
  deps: WorkerDeps,
  candidate: { provider: string; model: string },
  data: JobData,
): boolean {
  if (deps.provider.config.kind !== 'openai' || data.op === 'embeddings') return false;
  const model = deps.prices.model(candidate.provider, candidate.model);
  return model ? model.capabilities.includes('reasoning') : asksReasoning(data.request.reasoning_effort);
}
