export interface RestartPolicy {
  /** Delay before the first restart of a streak of crashes. */
  initialMs: number;
  /** The delay doubles per crash up to this. */
  maxMs: number;
  /** A run at least this long ends the streak: the next crash waits `initialMs` again. */
  resetAfterMs: number;
}

/** Like compose's `restart: unless-stopped`, never giving up, but quick for a one-off crash. */
export const RESTART_POLICY: RestartPolicy = { initialMs: 250, maxMs: 10_000, resetAfterMs: 30_000 };

/** When to restart one service after each of its crashes: exponential backoff with a reset. */
export class RestartBackoff {
  #policy: RestartPolicy;
  /** Crashes since the last run that lasted `resetAfterMs`. */
  #streak = 0;
  /** Restarts over the service's whole life, for the log. */
  #restarts = 0;

  constructor(policy: RestartPolicy = RESTART_POLICY) {
    this.#policy = policy;
  }

  get restarts(): number {
    return this.#restarts;
  }

  /** The service crashed after running `uptimeMs`: how long to wait, and which restart this is. */
  next(uptimeMs: number): { delayMs: number; restart: number } {
    const p = this.#policy;
    if (uptimeMs >= p.resetAfterMs) this.#streak = 0;
    // Capping the exponent first keeps a long crash loop from overflowing to Infinity.
    const delayMs = Math.min(p.maxMs, p.initialMs * 2 ** Math.min(this.#streak, 30));
    this.#streak++;
    this.#restarts++;
    return { delayMs, restart: this.#restarts };
  }
}
