import { describe, expect, it } from 'vitest';
import { RESTART_POLICY, RestartBackoff } from './backoff.ts';

const delays = (b: RestartBackoff, uptimes: number[]) => uptimes.map((u) => b.next(u).delayMs);

describe('RestartBackoff', () => {
  it('doubles from 250 ms up to a 10 s cap while the service keeps crashing', () => {
    const b = new RestartBackoff();
    expect(delays(b, Array(9).fill(100))).toEqual([
      250, 500, 1_000, 2_000, 4_000, 8_000, 10_000, 10_000, 10_000,
    ]);
  });

  it('starts over at 250 ms once a run lasted 30 s, and counts every restart', () => {
    const b = new RestartBackoff();
    expect(delays(b, [10, 10, 10])).toEqual([250, 500, 1_000]);
    expect(b.next(RESTART_POLICY.resetAfterMs)).toEqual({ delayMs: 250, restart: 4 });
    expect(b.next(RESTART_POLICY.resetAfterMs - 1)).toEqual({ delayMs: 500, restart: 5 });
    expect(b.restarts).toBe(5);
  });

  it('never gives up and stays at the cap however long the loop', () => {
    const b = new RestartBackoff({ initialMs: 1, maxMs: 50, resetAfterMs: 1_000 });
    let last = 0;
    for (let i = 0; i < 2_000; i++) last = b.next(0).delayMs;
    expect(last).toBe(50);
    expect(b.restarts).toBe(2_000);
  });
});
