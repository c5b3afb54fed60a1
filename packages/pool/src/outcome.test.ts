import { type ErrorCode, GatewayError } from '@faregate/contracts/errors';
import { describe, expect, it } from 'vitest';
import { HoldSpent } from './hold-calls.ts';
import { circuitRefusal, decide, nextHop, type OutcomeFacts } from './outcome.ts';

const now = 1_000_000;
const data: OutcomeFacts['data'] = {
  plan: [
    { provider: 'openai', model: 'a', contextWindow: 8_000 },
    { provider: 'anthropic', model: 'b', contextWindow: 8_000 },
    { provider: 'gemini', model: 'c', contextWindow: 1_000_000 },
  ],
  hop: 0,
  attempts: [],
  created: now,
  deadline: now + 60_000,
};
const facts = (f: Partial<OutcomeFacts>): OutcomeFacts => ({
  data,
  canRetry: true,
  canWait: true,
  wroteContent: false,
  now,
  ...f,
});
const err = (code: ErrorCode, o: { retryable?: boolean; retryAfterMs?: number } = {}) =>
  new GatewayError({ code, message: code, ...o });

describe('outcome.decide', () => {
  it('no error completes; a lost job is lost whatever the error; a cancel is a cancel', () => {
    expect(decide(facts({}))).toEqual({ kind: 'complete' });
    expect(decide(facts({ lost: true, error: err('upstream_error', { retryable: true }) }))).toEqual({
      kind: 'lost',
    });
    expect(decide(facts({ error: err('cancelled') }))).toEqual({ kind: 'cancelled' });
  });

  it('a 429 with retry-after waits without using an attempt, unless content was streamed, the hold is spent, or the deadline is nearer', () => {
    const e429 = err('rate_limit_exceeded', { retryable: true, retryAfterMs: 400 });
    expect(decide(facts({ error: e429 }))).toEqual({ kind: 'wait', waitMs: 400 });
    expect(decide(facts({ error: err('rate_limit_exceeded', { retryable: true }) }))).toEqual({
      kind: 'wait',
      waitMs: 1_000,
    });
    expect(decide(facts({ error: e429, wroteContent: true })).kind).toBe('retry');
    expect(decide(facts({ error: e429, canWait: false })).kind).toBe('retry');
    expect(decide(facts({ error: e429, data: { ...data, deadline: now + 300 } })).kind).toBe('retry');
    // An overload only waits when it says how long.
    expect(decide(facts({ error: err('overloaded', { retryable: true }) })).kind).toBe('retry');
    expect(decide(facts({ error: err('overloaded', { retryable: true, retryAfterMs: 50 }) }))).toEqual({
      kind: 'wait',
      waitMs: 50,
    });
  });

  it('an open circuit with no candidate left: a job nobody waits on waits for it alone, within its deadline; an interactive request fails', () => {
    const last = { ...data, hop: 2 };
    const refused = () => circuitRefusal('gemini', 15_000);
    expect(decide(facts({ data: last, error: refused() }))).toEqual({
      kind: 'wait',
      waitMs: 15_000,
      jobOnly: true,
    });
    // Another candidate left: it falls back, as before.
    expect(decide(facts({ error: refused() })).kind).toBe('fallBack');
    // A caller waiting (a patience), no starts left, or the deadline nearer than the circuit: it fails.
    for (const f of [
      { data: { ...last, patienceMs: 60_000 } },
      { data: last, canWait: false },
      { data: { ...last, deadline: now + 10_000 } },
    ]) {
      const d = decide(facts({ ...f, error: refused() }));
      expect(d.kind).toBe('fail');
      expect(d.kind === 'fail' && d.error.code).toBe('provider_unavailable');
    }
    // Any other 503 of the provider is not waited for this way.
    expect(
      decide(facts({ data: last, error: err('provider_unavailable', { retryAfterMs: 15_000 }) })).kind,
    ).toBe('fail');
  });

  it('an interactive request waits a 429 out only within its patience and at most RATE_LIMIT_RETRIES times, then falls back or fails with the 429', () => {
    const e429 = err('rate_limit_exceeded', { retryable: true, retryAfterMs: 1_000 });
    const patient = { ...data, patienceMs: 5_000 };
    const limited = (n: number, provider = 'openai') =>
      Array.from({ length: n }, () => ({
        provider,
        model: 'a',
        status: 429,
        code: 'rate_limit_exceeded',
      }));
    // The first and second 429 (this call is the route's last step) are waited out.
    expect(decide(facts({ data: patient, error: e429, route: limited(1), maxRateLimitWaits: 2 }))).toEqual({
      kind: 'wait',
      waitMs: 1_000,
    });
    expect(decide(facts({ data: patient, error: e429, route: limited(2), maxRateLimitWaits: 2 })).kind).toBe(
      'wait',
    );
    // The third: no further call to this provider (no retry either): the next candidate.
    const third = decide(facts({ data: patient, error: e429, route: limited(3), maxRateLimitWaits: 2 }));
    expect(third.kind).toBe('fallBack');
    // A wait that would end past the patience is not made.
    const late = decide(facts({ data: patient, error: e429, route: limited(1), now: now + 4_500 }));
    expect(late.kind).toBe('fallBack');
    // The last candidate: the caller gets the 429 and its retry-after.
    const last = { ...patient, hop: 2 };
    const d = decide(facts({ data: last, error: e429, route: limited(3, 'gemini'), maxRateLimitWaits: 2 }));
    expect(d.kind).toBe('fail');
    if (d.kind === 'fail') {
      expect(d.error.code).toBe('rate_limit_exceeded');
      expect(d.error.retryAfterMs).toBe(1_000);
    }
    // A 429 on another provider earlier does not count against this one.
    const other = [
      { provider: 'gemini', model: 'c', status: 429, code: 'rate_limit_exceeded' },
      ...limited(1),
    ];
    expect(decide(facts({ data: patient, error: e429, route: other, maxRateLimitWaits: 1 })).kind).toBe(
      'wait',
    );
  });

  it('a retryable error retries while attempts remain, then falls back naming the failure', () => {
    const e = err('upstream_error', { retryable: true });
    expect(decide(facts({ error: e }))).toEqual({ kind: 'retry' });
    expect(decide(facts({ error: e, canRetry: false }))).toEqual({
      kind: 'fallBack',
      hop: 1,
      attempts: [{ provider: 'openai', model: 'a', code: 'upstream_error', message: 'upstream_error' }],
    });
  });

  it('content an SSE caller already has is final: a failure after it neither retries nor falls back', () => {
    const e = err('upstream_error', { retryable: true });
    const sse = { ...data, contentFinal: true as const };
    expect(decide(facts({ data: sse, error: e, wroteContent: true, storedContent: true }))).toMatchObject({
      kind: 'fail',
      error: { code: 'upstream_error' },
    });
    expect(
      decide(facts({ data: sse, error: e, wroteContent: true, storedContent: true, canRetry: false })),
    ).toMatchObject({
      kind: 'fail',
    });
    // Before any content, content whose write failed (it may not be stored), or for a caller that
    // can take a reset (WebSocket, async jobs), as before.
    expect(decide(facts({ data: sse, error: e }))).toEqual({ kind: 'retry' });
    expect(decide(facts({ data: sse, error: e, wroteContent: true }))).toEqual({ kind: 'retry' });
    expect(decide(facts({ error: e, wroteContent: true }))).toEqual({ kind: 'retry' });
  });

  it('the last candidate fails, with every attempt named; a non-retryable request error fails at once', () => {
    const last = { ...data, hop: 2, attempts: [{ provider: 'openai', model: 'a', code: 'x', message: 'm' }] };
    const d = decide(
      facts({ data: last, error: err('upstream_error', { retryable: true }), canRetry: false }),
    );
    expect(d.kind).toBe('fail');
    if (d.kind === 'fail') expect(d.error.message).toContain('All 2 route candidates failed');
    const bad = decide(facts({ error: err('invalid_request_error') }));
    expect(bad).toEqual({ kind: 'fail', error: err('invalid_request_error') });
  });

  it('past the deadline neither retries nor falls back', () => {
    const d = decide(facts({ error: err('upstream_error', { retryable: true }), now: data.deadline }));
    expect(d.kind).toBe('fail');
  });

  it('a spent hold fails instead of retrying or falling back', () => {
    const spent = new HoldSpent({ code: 'upstream_error', message: 'spent', retryable: false });
    const d = decide(facts({ error: err('upstream_error', { retryable: true }), spent }));
    expect(d).toEqual({ kind: 'fail', error: spent });
  });

  it('a context-length failure falls back only to a bigger window', () => {
    expect(nextHop(data, err('context_length_exceeded'))).toBe(2);
    expect(nextHop(data, err('upstream_error'))).toBe(1);
    expect(nextHop({ ...data, hop: 2 }, err('upstream_error'))).toBeUndefined();
    expect(decide(facts({ error: err('context_length_exceeded') }))).toMatchObject({
      kind: 'fallBack',
      hop: 2,
    });
  });
});
