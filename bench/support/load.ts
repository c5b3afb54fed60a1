import { performance } from 'node:perf_hooks';

export interface LoadOptions {
  /** Requests in flight at once (one loop each: a closed loop, like N users waiting on replies). */
  concurrency: number;
  /** Stop after this many requests have been started… */
  maxRequests: number;
  /** …or once this much time has passed, whichever comes first. */
  maxMs: number;
  /** Sends one request and resolves when its reply has been read in full; throws on any failure. */
  send: () => Promise<void>;
}

export interface LoadResult {
  /** Latency of every successful request in ms, sorted ascending. */
  latenciesMs: Float64Array;
  errors: number;
  firstError?: string;
  elapsedMs: number;
  /** Successful requests per second over the whole run. */
  rps: number;
}

/** Runs a closed loop of `concurrency` sequential senders and records each request's latency. */
export async function closedLoop(opts: LoadOptions): Promise<LoadResult> {
  const lat: number[] = [];
  let started = 0;
  let errors = 0;
  let firstError: string | undefined;
  const t0 = performance.now();
  const end = t0 + opts.maxMs;
  const loop = async () => {
    while (started < opts.maxRequests && performance.now() < end) {
      started++;
      const s = performance.now();
      try {
        await opts.send();
        lat.push(performance.now() - s);
      } catch (e) {
        errors++;
        firstError ??= e instanceof Error ? e.message : String(e);
      }
    }
  };
  await Promise.all(Array.from({ length: opts.concurrency }, loop));
  const elapsedMs = performance.now() - t0;
  const latenciesMs = Float64Array.from(lat).sort();
  return { latenciesMs, errors, firstError, elapsedMs, rps: (lat.length * 1000) / elapsedMs };
}

/** Nearest-rank percentile (`p` in 0–100) of an ascending array; NaN when empty. */
export function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
}

/** Median of a few run results (the middle one, or the mean of the two middle ones). */
export function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}
