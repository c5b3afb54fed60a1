/**
 * Exponential backoff with jitter ("equal jitter": half fixed, half random), so many clients that
 * lost the same server do not come back in lockstep.
 */
export function backoffMs(attempt: number, baseMs = 100, maxMs = 5_000): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 16));
  return ceiling / 2 + Math.random() * (ceiling / 2);
}
