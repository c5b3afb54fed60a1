import type { Redis, Result } from 'ioredis';
import type { CircuitConfig } from '@faregate/catalog/gateway-config';
import type { Keys } from '@faregate/queue/keys';

/**
 * A circuit breaker per provider, shared by every process through Redis. Closed: calls flow and
 * outcomes are counted in a sliding window; when failures reach `failureRatio` of at least
 * `minSamples` calls it opens. Open: calls are refused (jobs go to their fallback) until
 * `openMs` has passed; then one probe is let through (half-open): success closes it, failure
 * re-opens it. Rate limiting (429) is not a failure of the provider.
 */

// KEYS: state hash. ARGV: op, now, windowMs, minSamples, failureRatio, openMs, successes
// op 'check' → 0 closed (go), 1 open (refuse), 2 probe (go, you are the probe)
// op 'ok' / 'fail' → resulting state 0 closed, 1 open, 2 half-open
// successes: calls that succeeded since this process last reported (counted before a failure)
const SCRIPT = `
local op = ARGV[1]; local now = tonumber(ARGV[2]); local window = tonumber(ARGV[3])
local minSamples = tonumber(ARGV[4]); local ratio = tonumber(ARGV[5]); local openMs = tonumber(ARGV[6])
local successes = tonumber(ARGV[7]) or 0
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
local untilMs = tonumber(redis.call('HGET', KEYS[1], 'until') or '0')
local size = math.floor(window / 10)
local cur = math.floor(now / size)
if op == 'check' then
  if state == 'closed' then return 0 end
  if now < untilMs then return 1 end
  -- Open and cooled down (or a probe timed out): this caller is the probe.
  redis.call('HSET', KEYS[1], 'state', 'half', 'until', now + openMs)
  return 2
end
if op == 'ok' then
  if state == 'half' then
    redis.call('DEL', KEYS[1])
    return 0
  end
  -- A late success of a call that started before the circuit opened does not close it.
  if state == 'open' then return 1 end
  -- Closed: count them. The ratio only matters when a failure might open the circuit.
  if successes > 0 then redis.call('HINCRBY', KEYS[1], 's' .. cur, successes) end
  redis.call('PEXPIRE', KEYS[1], window + openMs * 4)
  return 0
else
  if state == 'half' then
    redis.call('HSET', KEYS[1], 'state', 'open', 'until', now + openMs)
    return 1
  end
  if state == 'open' then return 1 end
  if successes > 0 then redis.call('HINCRBY', KEYS[1], 's' .. cur, successes) end
  redis.call('HINCRBY', KEYS[1], 'f' .. cur, 1)
end
local s, f = 0, 0
for b = cur - 9, cur do
  s = s + (tonumber(redis.call('HGET', KEYS[1], 's' .. b)) or 0)
  f = f + (tonumber(redis.call('HGET', KEYS[1], 'f' .. b)) or 0)
end
redis.call('HDEL', KEYS[1], 's' .. (cur - 10), 'f' .. (cur - 10), 's' .. (cur - 11), 'f' .. (cur - 11))
redis.call('PEXPIRE', KEYS[1], window + openMs * 4)
if op == 'fail' and s + f >= minSamples and f >= ratio * (s + f) then
  redis.call('HSET', KEYS[1], 'state', 'open', 'until', now + openMs)
  return 1
end
return 0
`;

declare module 'ioredis' {
  interface RedisCommander<Context> {
    syCircuit(
      key: string,
      op: string,
      now: number,
      windowMs: number,
      minSamples: number,
      ratio: number,
      openMs: number,
      successes: number,
    ): Result<number, Context>;
  }
}

export type CircuitState = 'closed' | 'open' | 'half-open';
const SUCCESS_FLUSH_MS = 250;
const STATES: CircuitState[] = ['closed', 'open', 'half-open'];

export class CircuitBreaker {
  readonly #redis: Redis;
  readonly #key: string;
  config: CircuitConfig;
  /** Last state seen by this process (for metrics). */
  state: CircuitState = 'closed';

  constructor(redis: Redis, keys: Keys, provider: string, config: CircuitConfig) {
    if (typeof (redis as Partial<Redis>).syCircuit !== 'function')
      redis.defineCommand('syCircuit', { numberOfKeys: 1, lua: SCRIPT });
    this.#redis = redis;
    this.#key = keys.circuit(provider);
    this.config = config;
  }

  /** Successes not yet reported: while closed they are sent in one write per interval, not per call. */
  #pending = 0;
  #flushTimer: NodeJS.Timeout | undefined;

  async #run(op: string, successes = 0): Promise<number> {
    const c = this.config;
    return this.#redis.syCircuit(
      this.#key,
      op,
      Date.now(),
      c.windowMs,
      c.minSamples,
      c.failureRatio,
      c.openMs,
      successes,
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
  async allow(): Promise<boolean> {
    if (this.state === 'closed' && Date.now() - this.#closedSeenAt < 250) return true;
    const r = await this.#run('check');
    if (r === 0) this.#closedSeenAt = Date.now();
    this.state = r === 0 ? 'closed' : r === 1 ? 'open' : 'half-open';
    return r !== 1;
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
