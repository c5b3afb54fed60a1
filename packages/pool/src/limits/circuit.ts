import type { RedisClient } from '@faregate/queue/redis';
import { luaScript } from '@faregate/queue/lua';
import type { CircuitConfig } from '@faregate/catalog/gateway-config';
import type { Keys } from '@faregate/queue/keys';

/**
 * A circuit breaker per provider, shared by every process through Redis. Closed: calls flow and
 * outcomes are counted in a sliding window; when failures reach `failureRatio` of at least
 * `minSamples` calls it opens. Open: calls are refused (jobs go to their fallback) until
 * `openMs` has passed; then one probe is let through (half-open): success closes it, failure
 * re-opens it. Rate limiting (429) is not a failure of the provider.
 */

// The breaker's script (circuit.lua). KEYS: the pool's circuit hash (keys.circuit).
// op 'check' → 0 closed (go), 1 open (refuse), a negative number: go, you are the probe (its
// token, negated); op 'ok' / 'fail' → resulting state 0 closed, 1 open, 2 half-open; 'release' ends
// the probe of a token without a verdict (the next check probes again).
// successes: calls that succeeded since this process last reported (counted before a failure).
const circuitScript = luaScript<{
  keys: [state: string];
  args: [
    op: 'check' | 'ok' | 'fail' | 'release',
    now: number,
    windowMs: number,
    minSamples: number,
    ratio: number,
    openMs: number,
    successes: number,
    probe: string,
  ];
  result: number;
}>(new URL('./circuit.lua', import.meta.url), { numberOfKeys: 1 });

export type CircuitState = 'closed' | 'open' | 'half-open';
/** A call let through as the circuit's probe (`allow()`), named by its token. */
export interface Probe {
  probe: number;
}
const SUCCESS_FLUSH_MS = 250;
const STATES: CircuitState[] = ['closed', 'open', 'half-open'];

export class CircuitBreaker {
  readonly #redis: RedisClient;
  readonly #key: string;
  config: CircuitConfig;
  /** Last state seen by this process (for metrics). */
  state: CircuitState = 'closed';

  constructor(redis: RedisClient, keys: Keys, provider: string, config: CircuitConfig) {
    this.#redis = redis;
    this.#key = keys.circuit(provider);
    this.config = config;
  }

  /** Successes not yet reported: while closed they are sent in one write per interval, not per call. */
  #pending = 0;
  #flushTimer: NodeJS.Timeout | undefined;

  async #run(op: 'check' | 'ok' | 'fail' | 'release', successes = 0, probe = ''): Promise<number> {
    const c = this.config;
    return circuitScript(
      this.#redis,
      [this.#key],
      [op, Date.now(), c.windowMs, c.minSamples, c.failureRatio, c.openMs, successes, probe],
    );
  }

  #take(): number {
    const n = this.#pending;
    this.#pending = 0;
    clearTimeout(this.#flushTimer);
    this.#flushTimer = undefined;
    return n;
  }

  /** Reports the successes counted so far (also on a timer, and before every failure). */
  async flush(): Promise<void> {
    const n = this.#take();
    if (n > 0) this.state = STATES[await this.#run('ok', n)] ?? 'closed';
  }

  #closedSeenAt = 0;

  /**
   * May a call go to the provider now? While closed, the shared state is re-read at most every
   * 250 ms (a circuit another process opened is seen that fast); when open, every call asks.
   */
  async allow(): Promise<boolean | Probe> {
    if (this.state === 'closed' && Date.now() - this.#closedSeenAt < 250) return true;
    const r = await this.#run('check');
    if (r === 0) this.#closedSeenAt = Date.now();
    this.state = r === 0 ? 'closed' : r === 1 ? 'open' : 'half-open';
    return r < 0 ? { probe: -r } : r === 0;
  }

  /**
   * The outcome of a probe (`allow()` said `'probe'`) that was neither a success nor a provider
   * failure. The provider answered (a 4xx: a bad request, a rate limit): it is up, and the circuit
   * closes. It did not (cancelled, or stopped before its call): the next call probes at once, unless
   * this probe outlived `openMs` and another is running in its place. Either way no caller waits out
   * the probe's `openMs` behind a probe that ended.
   */
  async probeEnded(answered: boolean, probe: Probe): Promise<void> {
    if (answered) return this.success();
    this.state = STATES[await this.#run('release', 0, String(probe.probe))] ?? 'closed';
  }

  /**
   * A closed circuit only needs successes for its failure ratio, so they are batched (one Redis
   * write per `SUCCESS_FLUSH_MS`, and with the next failure). A probe's success closes the circuit
   * at once.
   */
  async success(): Promise<void> {
    this.#pending++;
    if (this.state !== 'closed') return this.flush();
    this.#flushTimer ??= setTimeout(() => void this.flush().catch(() => {}), SUCCESS_FLUSH_MS).unref();
  }

  async failure(): Promise<void> {
    this.state = STATES[await this.#run('fail', this.#take())] ?? 'closed';
    if (this.state !== 'closed') this.#closedSeenAt = 0;
  }
}
