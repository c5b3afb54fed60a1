import type { Usage } from '@faregate/contracts/chat';
import { toChatCompletion, zeroUsage } from '@faregate/contracts/chat';
import { GatewayError } from '@faregate/contracts/errors';
import type { FrameBody } from '@faregate/contracts/frames';
import type { JobData } from '@faregate/contracts/jobs';
import type { UsageEvent } from '@faregate/contracts/usage';
import { usageEventId } from '@faregate/contracts/usage';
import type { StreamEvent } from '@faregate/providers/types';
import type { ClaimRecord } from '@faregate/queue/frame-store';
import { StreamWriter } from './stream-writer.ts';
import type { Admission } from './limits/limiter.ts';
import { partialUsage, type Streamed } from './limits/estimate.ts';
import type { WorkerDeps } from './deps.ts';
import { countCall, countedCalls, describeCall, HoldSpent, holdCallsOf, holdSpent } from './hold-calls.ts';

export type AttemptOutcome =
  | { status: 'completed' }
  /** Provider said 429: the pool waits `waitMs`, the job goes back to the queue without using an attempt. */
  | { status: 'rate_limited'; waitMs: number }
  | { status: 'already_done' }
  | { status: 'fell_back'; to: string }
  | { status: 'failed'; code: string }
  | { status: 'cancelled' };

export interface AttemptInput {
  data: JobData;
  /** 1-based: BullMQ's attemptsStarted, so a re-run after a crash gets a new usage id. */
  attempt: number;
  /** This attempt may retry on the same provider if it fails retryably. */
  canRetry: boolean;
  /** A 429 may send the job back to wait (without using an attempt) rather than end it. */
  canWaitOnRateLimit: boolean;
  /** Generation may have been streamed by an earlier attempt or hop: subscribers must reset. */
  restart: boolean;
  /** The provider key the limiter admitted this call on. */
  keyIndex: number;
  /** Rate-limit admission to correct with the actual usage afterwards. */
  admission?: Extract<Admission, { ok: true }>;
  /** End this attempt with this error without calling the provider (e.g. gave up waiting for a limit). */
  forcedError?: GatewayError;
  signal?: AbortSignal;
  workerId: string;
}

/**
 * Abort reason of a fast-lane run whose job went to BullMQ before the run took it: the run stops
 * and writes nothing (the BullMQ attempt owns the job).
 */
export const RUN_LOST: unique symbol = Symbol('fast-lane run lost');

const hasTokens = (u: Usage) => u.inputTokens + u.outputTokens > 0;

/** The `running` status frame waits at most this long for the first token... */
const STATUS_WAIT_MS = 50;
/** ...and this long once the provider's response headers arrived. */
const STATUS_AFTER_HEADERS_MS = 2;
/** A request answered over HTTP that waited longer than this in the queue claims before it calls. */
const SPECULATE_WITHIN_MS = 1_000;

/**
 * One provider attempt of one job: claim it, call the provider, stream deltas, and end it with
 * exactly one of: done (+ final usage), a retry (thrown), a fallback hand-off, or a final error
 * (+ final usage). Frames, state and usage events are written together so nothing is half-done.
 */
export async function runAttempt(deps: WorkerDeps, input: AttemptInput): Promise<AttemptOutcome> {
  const { data, attempt } = input;
  const candidate = data.plan[data.hop];
  if (!candidate)
    throw new GatewayError({ code: 'internal_error', message: `no route candidate at hop ${data.hop}` });
  const ttlMs = (data.deltas ? deps.config.STREAM_TTL_SECONDS : deps.config.SYNC_TTL_SECONDS) * 1000;
  const owner = `${input.workerId}:${data.hop}:${attempt}`;
  const record = { account: data.account, model: data.requestedModel, created: data.created };
  // The first attempt of a request answered over HTTP that was picked up promptly calls the provider
  // without claiming the job first: its first write claims it (one Redis round trip less per
  // request), and is refused if another attempt owns the job or it already ended. Async jobs and
  // requests that waited in the queue (both may have been cancelled meanwhile) and re-runs (which
  // may find the job already ended) claim before they call.
  const speculative =
    attempt === 1 &&
    data.hop === 0 &&
    !input.restart &&
    data.replyTo !== undefined &&
    Date.now() - data.created < SPECULATE_WITHIN_MS;
  const claim = speculative ? record : undefined;
  const abort = new AbortController();
  if (!speculative) {
    const c = await deps.store.claim(data.id, owner, ttlMs, record);
    if (c.terminal) return { status: 'already_done' };
    if (c.cancelled) abort.abort(new GatewayError({ code: 'cancelled', message: 'cancelled by the caller' }));
  }

  const writer = new StreamWriter(deps.store, data.id, owner, ttlMs, data.replyTo, claim);
  // The frames that open the attempt go out with its first token (one write, and the provider call
  // is not queued behind it), or shortly after the provider answered, or after STATUS_WAIT_MS.
  let statusTimer: NodeJS.Timeout | undefined;
  const releaseStatusIn = (ms: number) => {
    clearTimeout(statusTimer);
    statusTimer = setTimeout(() => writer.release(), ms);
  };
  if (data.deltas) {
    // A restart of generation is always explicit: whatever an earlier attempt streamed is void.
    if (input.restart) writer.defer({ type: 'reset', reason: 'restart', hop: data.hop, attempt });
    writer.defer({
      type: 'status',
      state: 'running',
      provider: candidate.provider,
      model: candidate.model,
      attempt,
    });
    releaseStatusIn(STATUS_WAIT_MS);
  }

  let usage: Usage = zeroUsage();
  let estimated = false;
  // What the caller was sent: what a call that ends early is billed at least.
  const streamed: Streamed = { text: '', reasoning: '' };
  const usageEvent = (outcome: UsageEvent['outcome'], final: boolean): UsageEvent => ({
    v: 1,
    id: usageEventId(data.id, data.hop, attempt),
    requestId: data.id,
    account: data.account,
    key: data.key,
    provider: candidate.provider,
    model: candidate.model,
    hop: data.hop,
    attempt,
    ...usage,
    outcome,
    final,
    ...(final && data.hold ? { hold: data.hold } : {}),
    ...(estimated ? { estimated: true } : {}),
    at: Date.now(),
  });

  const unregister = deps.cancels.register(data.id, abort);
  const onAbort = () => abort.abort(input.signal?.reason);
  input.signal?.addEventListener('abort', onAbort, { once: true });
  const timer = setTimeout(
    () => abort.abort(new GatewayError({ code: 'upstream_timeout', message: 'request deadline exceeded' })),
    Math.max(1, data.deadline - Date.now()),
  );

  const started = performance.now();
  let firstToken = 0;
  const onEvent = (e: StreamEvent) => {
    switch (e.type) {
      case 'text':
        if (!firstToken) firstToken = performance.now();
        streamed.text += e.text;
        writer.text(e.text);
        break;
      case 'reasoning':
        streamed.reasoning += e.text;
        writer.reasoning(e.text);
        break;
      case 'refusal':
        streamed.text += e.text;
        writer.refusal(e.text);
        break;
      case 'tool_call':
        if (!firstToken) firstToken = performance.now();
        streamed.text += (e.delta.function?.name ?? '') + (e.delta.function?.arguments ?? '');
        writer.toolCall(e.delta);
        break;
      case 'usage':
        usage = e.usage;
        break;
    }
    if (writer.error) abort.abort(writer.error);
  };

  try {
    if (abort.signal.aborted) throw abort.signal.reason;
    if (input.forcedError) throw input.forcedError;
    // A re-run (retry, hop, restart) first checks the calls the hold covers (see hold-calls.ts); a
    // first attempt cannot have spent them.
    if (input.restart || attempt > 1 || data.hop > 0) {
      const calls = await countedCalls(deps, data);
      if (calls.length >= holdCallsOf(data)) throw holdSpent(data, calls);
    }
    if (!(await deps.circuit.allow())) {
      throw new GatewayError({
        code: 'provider_unavailable',
        message: `${candidate.provider} is failing; its circuit is open`,
      });
    }
    const provider = deps.provider;
    if (input.admission) await deps.limiter.touch(input.admission);
    const res = await deps.call({
      adapter: provider.adapter,
      config: provider.config,
      apiKey: provider.key(input.keyIndex),
      request: data.request,
      model: candidate.model,
      stream: data.deltas,
      signal: abort.signal,
      onEvent: data.deltas ? onEvent : undefined,
      onHeaders: (_status: number, headers: Headers) => {
        if (statusTimer) releaseStatusIn(STATUS_AFTER_HEADERS_MS);
        const info = provider.adapter.readRateLimits(headers);
        void deps.limiter.learn(input.keyIndex, info).then(
          (ms) => ms > 0 && deps.metrics.rateLimitWaits.inc({ reason: 'headers' }),
          () => {},
        );
      },
    });
    usage = res.completion.usage;
    deps.metrics.upstreamLatency.observe((performance.now() - started) / 1000);
    if (firstToken) deps.metrics.ttft.observe((firstToken - started) / 1000);
    await writer.flush();
    const result = toChatCompletion(
      data.id,
      data.requestedModel,
      Math.floor(data.created / 1000),
      res.completion,
    );
    const frames: FrameBody[] = data.deltas
      ? [
          { type: 'usage', usage: result.usage },
          { type: 'done', result },
        ]
      : [{ type: 'done', result }];
    await deps.store.append(data.id, frames, {
      owner,
      claim,
      ttlMs,
      replyTo: data.replyTo,
      state: 'completed',
      usage: usageEvent('success', true),
    });
    // Bookkeeping after the answer is on its way, not in front of it.
    void deps.circuit.success().catch(() => {});
    if (input.admission) {
      void deps.limiter.settle(input.admission, usage.inputTokens + usage.outputTokens).catch(() => {});
    }
    deps.metrics.requests.inc({ outcome: 'completed' });
    return { status: 'completed' };
  } catch (raw) {
    if (input.signal?.aborted && input.signal.reason === RUN_LOST) return { status: 'already_done' };
    const err = toGatewayError(abort.signal.aborted ? (abort.signal.reason ?? raw) : raw);
    await writer.flush().catch(() => {});
    if (isNotOwner(writer.error) || isNotOwner(raw)) {
      // Another attempt owns the job now (we were stalled): leave everything to it.
      return { status: 'already_done' };
    }
    // The call ended early: it is billed at least what it streamed (the provider bills what it
    // generated), whatever happens to the attempt next.
    ({ usage, estimated } = partialUsage(data.request, usage, streamed));
    if (input.admission)
      void deps.limiter.settle(input.admission, usage.inputTokens + usage.outputTokens).catch(() => {});
    if (isProviderFailure(err) && !(err instanceof HoldSpent)) void deps.circuit.failure().catch(() => {});
    // A call that produced tokens uses one of the calls the hold covers (hold-calls.ts). Counted
    // before its usage event is written. A cancelled request makes no further call: nothing to count.
    let spent: HoldSpent | undefined;
    if (hasTokens(usage) && err.code !== 'cancelled') {
      const calls = await countCall(deps, data, describeCall(candidate, data.hop, attempt, err), ttlMs);
      if (calls.length >= holdCallsOf(data)) spent = holdSpent(data, calls);
    }
    // A 429, or an overload that says how long to wait (Anthropic 529, 503 + retry-after): the pool waits.
    if (
      (err.code === 'rate_limit_exceeded' || (err.code === 'overloaded' && err.retryAfterMs)) &&
      err.retryable
    ) {
      if (err.code === 'rate_limit_exceeded') deps.metrics.upstream429.inc();
      const waitMs = err.retryAfterMs ?? 1_000;
      await deps.limiter.pause(input.keyIndex, waitMs).catch(() => {});
      if (input.canWaitOnRateLimit && !writer.wroteContent && !spent && Date.now() + waitMs < data.deadline) {
        if (hasTokens(usage))
          await deps.store.append(data.id, [], {
            owner,
            claim,
            ttlMs,
            replyTo: data.replyTo,
            usage: usageEvent('failed', false),
          });
        return { status: 'rate_limited', waitMs };
      }
    }
    return await endWithError(deps, input, err, {
      owner,
      claim,
      ttlMs,
      usage,
      usageEvent,
      candidate,
      spent,
    });
  } finally {
    clearTimeout(statusTimer);
    clearTimeout(timer);
    unregister();
    input.signal?.removeEventListener('abort', onAbort);
  }
}

async function endWithError(
  deps: WorkerDeps,
  input: AttemptInput,
  err: GatewayError,
  ctx: {
    owner: string;
    claim: ClaimRecord | undefined;
    ttlMs: number;
    usage: Usage;
    usageEvent: (o: UsageEvent['outcome'], final: boolean) => UsageEvent;
    candidate: { provider: string; model: string };
    /** The calls the request's hold covers are used up: no retry, no fallback (hold-calls.ts). */
    spent?: HoldSpent;
  },
): Promise<AttemptOutcome> {
  const { data } = input;
  const { owner, ttlMs, claim } = ctx;
  if (err.code === 'cancelled') {
    await deps.store.append(data.id, [{ type: 'error', status: err.status, error: err.toJSON() }], {
      owner,
      claim,
      ttlMs,
      replyTo: data.replyTo,
      state: 'cancelled',
      usage: ctx.usageEvent('cancelled', true),
    });
    deps.metrics.requests.inc({ outcome: 'cancelled' });
    return { status: 'cancelled' };
  }
  const pastDeadline = Date.now() >= data.deadline;
  const attempts = [
    ...data.attempts,
    { provider: ctx.candidate.provider, model: ctx.candidate.model, code: err.code, message: err.message },
  ];
  // A context-length failure only moves to a candidate with a bigger window (others would fail alike).
  let nextHop = data.hop + 1;
  if (err.code === 'context_length_exceeded') {
    const have = data.plan[data.hop]?.contextWindow ?? 0;
    while (
      nextHop < data.plan.length &&
      (data.plan[nextHop]?.contextWindow ?? Number.POSITIVE_INFINITY) <= have
    )
      nextHop++;
  }
  const next = data.plan[nextHop];
  const retry = err.retryable && input.canRetry && !pastDeadline;
  const fallBack = next !== undefined && !pastDeadline && canFallBack(err);
  // Another call would go past what the hold covers: the request fails here instead.
  const spent = ctx.spent && (retry || fallBack) ? ctx.spent : undefined;
  if (retry && !spent) {
    const frames: FrameBody[] = data.deltas
      ? [{ type: 'status', state: 'retrying', provider: ctx.candidate.provider, reason: err.code }]
      : [];
    const usage = hasTokens(ctx.usage) ? ctx.usageEvent('failed', false) : undefined;
    if (frames.length || usage)
      await deps.store.append(data.id, frames, { owner, ttlMs, replyTo: data.replyTo, usage, claim });
    deps.metrics.retries.inc({ code: err.code });
    throw err;
  }
  if (next && fallBack && !spent) {
    const frames: FrameBody[] = data.deltas
      ? [{ type: 'status', state: 'fallback', provider: next.provider, model: next.model, reason: err.code }]
      : [];
    const usage = hasTokens(ctx.usage) ? ctx.usageEvent('failed', false) : undefined;
    if (frames.length || usage)
      await deps.store.append(data.id, frames, { owner, ttlMs, replyTo: data.replyTo, usage, claim });
    // Deterministic job id: if we die after this add and re-run, the second add is a no-op.
    const { attemptBase: _, ...hopData } = data; // the next hop counts its attempts from 1
    await deps.queues.add({ ...hopData, hop: nextHop, attempts });
    deps.metrics.fallbacks.inc({ to: next.provider });
    return { status: 'fell_back', to: next.provider };
  }
  const final =
    spent ??
    (err instanceof HoldSpent ? err : undefined) ??
    (attempts.length > 1 ? summarize(err, attempts) : err);
  await deps.store.append(data.id, [{ type: 'error', status: final.status, error: final.toJSON() }], {
    owner,
    claim,
    ttlMs,
    replyTo: data.replyTo,
    state: 'failed',
    usage: ctx.usageEvent('failed', true),
  });
  deps.metrics.requests.inc({ outcome: 'failed' });
  return { status: 'failed', code: final.code };
}

/** Errors another provider might not have. Invalid requests would fail anywhere; a context-length error may fit a bigger window. */
function canFallBack(err: GatewayError): boolean {
  return (
    err.retryable ||
    err.code === 'context_length_exceeded' ||
    err.code === 'model_not_found' ||
    err.code === 'upstream_auth_error' ||
    // Rate limited past the job's patience, or the provider's quota is spent: another provider may have room.
    err.code === 'rate_limit_exceeded' ||
    err.code === 'provider_unavailable'
  );
}

function summarize(last: GatewayError, attempts: JobData['attempts']): GatewayError {
  const list = attempts.map((a) => `${a.provider}/${a.model}: ${a.code} (${a.message})`).join('; ');
  return new GatewayError({
    code: last.code,
    message: `All ${attempts.length} route candidates failed: ${list}`,
    retryable: last.retryable,
    param: last.param,
    retryAfterMs: last.retryAfterMs,
  });
}

export function toGatewayError(e: unknown): GatewayError {
  if (e instanceof GatewayError) return e;
  if (e instanceof Error && e.name === 'AbortError')
    return new GatewayError({ code: 'cancelled', message: 'cancelled' });
  return new GatewayError({ code: 'internal_error', message: 'internal error', retryable: true, cause: e });
}

/** Failures that say the provider is unwell (not the request, not a rate limit). */
const isProviderFailure = (e: GatewayError) =>
  e.code === 'upstream_error' || e.code === 'upstream_timeout' || e.code === 'overloaded';

const isNotOwner = (e: unknown) => e instanceof Error && e.message.includes('NOTOWNER');
