/**
 * A token bucket that refills continuously, the model behind OpenAI's `x-ratelimit-*` headers:
 * `remaining` is what is left now, `reset` the time until the bucket is full again.
 */
export class Bucket {
  capacity: number;
  level: number;
  last: number;
  /** When false the bucket only reports (unlimited providers still send plausible headers). */
  enforce: boolean;

  constructor(capacity: number, enforce: boolean, now = Date.now()) {
    this.capacity = capacity;
    this.level = capacity;
    this.last = now;
    this.enforce = enforce;
  }

  private refill(now: number): void {
    const elapsed = now - this.last;
    if (elapsed > 0) {
      this.level = Math.min(this.capacity, this.level + (elapsed * this.capacity) / 60_000);
      this.last = now;
    }
  }

  /** Takes `n` units; returns 0 on success, or the ms to wait until `n` units are available. */
  take(n: number, now = Date.now()): number {
    this.refill(now);
    if (this.enforce && this.level < n) return Math.ceil(((n - this.level) * 60_000) / this.capacity);
    this.level = Math.max(0, this.level - n);
    return 0;
  }

  remaining(): number {
    return Math.floor(this.level);
  }

  /** ms until the bucket is full again. */
  resetMs(): number {
    return Math.ceil(((this.capacity - this.level) * 60_000) / this.capacity);
  }
}

/** Go `time.Duration` text, as OpenAI formats resets: `12ms`, `1s`, `6m0s`, `2m59.56s`, `1h2m3.5s`. */
export function goDuration(ms: number): string {
  const total = Math.max(0, Math.round(ms));
  if (total < 1000) return `${total}ms`;
  const h = Math.floor(total / 3_600_000);
  const m = Math.floor((total % 3_600_000) / 60_000);
  const s = Number(((total % 60_000) / 1000).toFixed(3));
  if (h > 0) return `${h}h${m}m${s}s`;
  if (m > 0) return `${m}m${s}s`;
  return `${s}s`;
}

/** RFC 3339 timestamp, whole seconds rounded up (as Anthropic sends): `2026-02-24T22:25:30Z`. */
export function rfc3339(epochMs: number): string {
  return new Date(Math.ceil(epochMs / 1000) * 1000).toISOString().replace('.000Z', 'Z');
}

/** Protobuf duration text used by Gemini's RetryInfo: `27s`, `0.02s`. */
export function protoDuration(ms: number): string {
  return `${Number((Math.max(0, ms) / 1000).toFixed(3))}s`;
}
