import { afterEach, describe, expect, it, vi } from 'vitest';
import { CancelRegistry } from './cancel.ts';

afterEach(() => {
  vi.useRealTimers();
});

describe('CancelRegistry: cancels heard for jobs not running here', () => {
  it('remembers a cancel of a job not running here, and aborts one that is', () => {
    const r = new CancelRegistry();
    expect(r.cancel('req_queued')).toBe(false);
    expect(r.cancelledRecently('req_queued')).toBe(true);
    expect(r.cancelledRecently('req_other')).toBe(false);
    const ac = new AbortController();
    r.register('req_running', ac);
    expect(r.cancel('req_running')).toBe(true);
    expect(ac.signal.aborted).toBe(true);
  });

  it('a cancel of the start only (a batch’s cancel) leaves a running attempt alone and refuses a later start', () => {
    const r = new CancelRegistry();
    const ac = new AbortController();
    r.register('req_calling', ac);
    r.refuseStart('req_calling');
    expect(ac.signal.aborted).toBe(false);
    expect(r.cancelledRecently('req_calling')).toBe(true);
  });

  it('forgets them after 10 minutes', () => {
    vi.useFakeTimers();
    const r = new CancelRegistry();
    r.cancel('req_a');
    vi.advanceTimersByTime(10 * 60_000 - 1);
    expect(r.cancelledRecently('req_a')).toBe(true);
    vi.advanceTimersByTime(1);
    expect(r.cancelledRecently('req_a')).toBe(false);
  });

  it('keeps at most 100,000: the oldest go first', () => {
    const r = new CancelRegistry();
    for (let i = 0; i <= 100_000; i++) r.cancel(`req_${i}`);
    expect(r.cancelledRecently('req_0')).toBe(false);
    expect(r.cancelledRecently('req_1')).toBe(true);
    expect(r.cancelledRecently('req_100000')).toBe(true);
  });
});
