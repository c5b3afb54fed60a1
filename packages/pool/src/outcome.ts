import { GatewayError } from '@faregate/contracts/errors';
import type { JobData } from '@faregate/contracts/jobs';
import { describeStep, isSkip, ROUTE_SKIPS, type RouteSkip, type RouteStep } from '@faregate/contracts/route';
import { HoldSpent } from './hold-calls.ts';

/**
 * How an attempt ends, decided from what happened (pure: no I/O, no clock of its own). The attempt
 * writes what the decision says; the intake that delivered the job carries out `wait` and `retry`.
 */
export type Decision =
  | { kind: 'complete' }
  /** Another attempt owns the job (it was swept or re-run meanwhile): write nothing of the job's. */
  | { kind: 'lost' }
  | { kind: 'cancelled' }
  /**
   * The job goes back to wait `waitMs` without using an attempt: with the whole pool (a 429, a
   * limit), or alone (`jobOnly`: its provider's circuit is open, see `decide`).
   */
  | { kind: 'wait'; waitMs: number; jobOnly?: true }
  /** Again on this provider, after the queue's backoff. */
  | { kind: 'retry' }
  /** Hand the job to plan candidate `hop` (`ProviderQueues.addHop`), with `attempts` naming every failure so far. */
  | { kind: 'fallBack'; hop: number; attempts: JobData['attempts'] }
  | { kind: 'fail'; error: GatewayError };

export interface OutcomeFacts {
  data: Pick<JobData, 'plan' | 'hop' | 'attempts' | 'deadline' | 'created' | 'patienceMs' | 'contentFinal'>;
  /** The attempt's error; absent when the provider answered and the answer is written. */
  error?: GatewayError;
  /** A write was refused: another attempt owns the job. */
  lost?: boolean;
  /** This attempt may retry on the same provider. */
  canRetry: boolean;
  /** A 429 may send the job back to wait rather than end it. */
  canWait: boolean;
  /** The attempt streamed content to the caller (a wait would replay it). */
  wroteContent: boolean;
  /** A write of that content succeeded (a failed one, e.g. Redis restarting, may have stored nothing). */
  storedContent?: boolean;
  /** The calls the hold covers are used up, this one included (hold-calls.ts). */
  spent?: HoldSpent;
  /** The provider calls the request made, this one included: a final error names them. */
  route?: RouteStep[];
  /** Most rate-limit waits (429, overload with retry-after) of a request with a patience. */
  maxRateLimitWaits?: number;
  /**
   * The hop of the call that failed, when this attempt made none: an answer cut off by an earlier
   * attempt that stopped (the job may have moved on to a later hop since). Its error is that call's.
   */
  failedHop?: number;
  now: number;
}

/** How long the whole pool pauses after this error (429, or an overload that says how long), else 0. */
export function poolPauseMs(err: GatewayError): number {
  const waits =
    err.retryable &&
    (err.code === 'rate_limit_exceeded' || (err.code === 'overloaded' && err.retryAfterMs !== undefined));
  return waits ? (err.retryAfterMs ?? 1_000) : 0;
}

export function decide(f: OutcomeFacts): Decision {
  const { data, error: err } = f;
  if (f.lost) return { kind: 'lost' };
  if (!err) return { kind: 'complete' };
  if (err.code === 'cancelled') return { kind: 'cancelled' };
  const waitMs = poolPauseMs(err);
  // An interactive request waits a rate limit out only within its patience, a bounded number of
  // times; past that it falls back or fails with the 429 (never another call to the same provider).
  const patient = data.patienceMs !== undefined;
  const withinPatience =
    !patient ||
    (rateLimitWaits(f) < (f.maxRateLimitWaits ?? 2) &&
      f.now + waitMs <= data.created + (data.patienceMs ?? 0));
  if (
    waitMs > 0 &&
    withinPatience &&
    f.canWait &&
    !f.wroteContent &&
    !f.spent &&
    f.now + waitMs < data.deadline
  )
    return { kind: 'wait', waitMs };

  const pastDeadline = f.now >= data.deadline;
  const candidate = data.plan[f.failedHop ?? data.hop];
  const attempts = [
    ...data.attempts,
    {
      provider: candidate?.provider ?? 'unknown',
      model: candidate?.model ?? 'unknown',
      code: skips.get(err) ?? err.code,
      message: err.message,
    },
  ];
  const hop = nextHop(data, err);
  // An SSE caller has the content this attempt streamed and cannot take it back: another call's
  // answer would reach nobody, so the failure is the answer.
  const final = data.contentFinal === true && f.storedContent === true;
  const retry = err.retryable && f.canRetry && !pastDeadline && !(patient && waitMs > 0) && !final;
  const fallBack = hop !== undefined && !pastDeadline && canFallBack(err) && !final;
  // No candidate left and this one's circuit open, for a job nobody waits on (an async job, a batch
  // line): it waits until the circuit lets a probe through, within its deadline, as it waits out a
  // 429, rather than failing with a provider that may be back in seconds. The pool does not pause:
  // an interactive request still falls back or fails at once, and the next job of the pool may be
  // the probe. An interactive request (a patience) fails, or falls back, as before.
  const circuitWaitMs = err.retryAfterMs ?? 1_000;
  if (
    !fallBack &&
    !patient &&
    skips.get(err) === CIRCUIT_OPEN &&
    f.canWait &&
    !f.wroteContent &&
    f.now + circuitWaitMs < data.deadline
  )
    return { kind: 'wait', waitMs: circuitWaitMs, jobOnly: true };
  // Another call would go past what the hold covers: the request fails here instead.
  const spent = f.spent && (retry || fallBack) ? f.spent : undefined;
  if (retry && !spent) return { kind: 'retry' };
  if (hop !== undefined && fallBack && !spent) return { kind: 'fallBack', hop, attempts };
  // A cut-off answer is about the call that streamed it (its error names it), not about the route.
  const error =
    spent ??
    (err instanceof HoldSpent || f.failedHop !== undefined
      ? err
      : attempts.length > 1
        ? summarize(err, attempts)
        : err);
  return { kind: 'fail', error: nameAttempts(error, routeWithSkips(f.route ?? [], attempts)) };
}

const { CIRCUIT_OPEN, POOL_PAUSED } = ROUTE_SKIPS;

/** Refusals to call made before any call (`circuitRefusal`, `pauseRefusal`): by identity, not wording. */
const skips = new WeakMap<GatewayError, RouteSkip>();

/**
 * The attempt's refusal to call a provider whose circuit is open (attempt.ts): no call was made,
 * so the route has no step for it. The caller may try again once the circuit lets a probe through.
 */
export function circuitRefusal(provider: string, retryAfterMs: number): GatewayError {
  const err = new GatewayError({
    code: 'provider_unavailable',
    message: `${provider} is failing; its circuit is open`,
    retryAfterMs,
  });
  skips.set(err, CIRCUIT_OPEN);
  return err;
}

/**
 * The runner's refusal to wait for a pool whose limits (a pause learned from a 429, a spent RPM or
 * TPM window) open again only past the request's patience or deadline: no call was made; it falls
 * back, or the caller gets the 429 with the wait as its retry-after.
 */
export function pauseRefusal(provider: string, waitMs: number): GatewayError {
  const err = new GatewayError({
    code: 'rate_limit_exceeded',
    message: `${provider} stayed rate limited past the request's patience`,
    retryAfterMs: waitMs,
  });
  skips.set(err, POOL_PAUSED);
  return err;
}

/**
 * The route with a step for each candidate skipped without a call (its circuit open, its pool paused
 * past the patience, its pool lost with the job queued for it: lost-pools.ts), where it was in the plan:
 * the route holds the calls made, `attempts` each hop's final error in order (a hop's calls, then
 * its skip, since a skip ends the hop). A request whose every candidate was skipped made no call, and
 * still names each candidate (`circuit_open`, `paused`, `pool_lost`), in `error.attempts` and the `x-faregate-*` headers;
 * one answered by a later candidate names the skipped ones before it (attempt.ts).
 */
export function routeWithSkips(route: RouteStep[], attempts: JobData['attempts']): RouteStep[] {
  if (!attempts.some((a) => isSkip(a.code))) return route;
  const out: RouteStep[] = [];
  let i = 0;
  for (const a of attempts) {
    for (let s = route[i]; s && s.provider === a.provider && s.model === a.model; s = route[++i]) out.push(s);
    if (isSkip(a.code)) out.push({ provider: a.provider, model: a.model, status: null, code: a.code });
  }
  return [...out, ...route.slice(i)];
}

/**
 * A final error names every provider call the request made (provider, model, status): as
 * `error.attempts`, and in the message unless it already lists them.
 */
function nameAttempts(err: GatewayError, route: RouteStep[]): GatewayError {
  if (route.length === 0) return err;
  const first = route[0]!;
  const listed = err.message.includes(`${first.provider}/${first.model}`);
  const named = listed
    ? err
    : new GatewayError({
        ...err.toJSON(),
        message: `${err.message} (${route.length === 1 ? 'attempt' : `${route.length} attempts`}: ${route.map(describeStep).join('; ')})`,
      });
  return named.withAttempts(route);
}

/** Rate-limit waits the request already made on this attempt's provider (the route holds this call last). */
function rateLimitWaits(f: OutcomeFacts): number {
  const provider = f.data.plan[f.data.hop]?.provider;
  const limited = (f.route ?? []).filter(
    (s) => s.provider === provider && (s.code === 'rate_limit_exceeded' || s.code === 'overloaded'),
  ).length;
  return Math.max(0, limited - 1);
}

/** The next plan candidate; a context-length failure skips candidates whose window is no bigger. */
export function nextHop(data: Pick<JobData, 'plan' | 'hop'>, err: GatewayError): number | undefined {
  let hop = data.hop + 1;
  if (err.code === 'context_length_exceeded') {
    const have = data.plan[data.hop]?.contextWindow ?? 0;
    while (hop < data.plan.length && (data.plan[hop]?.contextWindow ?? Number.POSITIVE_INFINITY) <= have)
      hop++;
  }
  return hop < data.plan.length ? hop : undefined;
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
export const isProviderFailure = (e: GatewayError): boolean =>
  !(e instanceof HoldSpent) &&
  (e.code === 'upstream_error' || e.code === 'upstream_timeout' || e.code === 'overloaded');
