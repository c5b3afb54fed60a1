import { performance } from 'node:perf_hooks';
import { GatewayError } from '@faregate/contracts/errors';
import { poolBacklog } from '@faregate/queue/backlog';
import type { Keys } from '@faregate/queue/keys';
import type { RedisClient } from '@faregate/queue/redis';

/**
 * Load shedding (MAX_POOL_BACKLOG): a request whose caller waits on the answer, for a pool with that
 * many requests queued ahead of it (`PoolBacklog.ahead`: interactive and async work not started, not
 * batch lines, which queue behind it, nor what is running), is refused at once with 503 `overloaded`
 * and retry-after, before any hold or enqueue, rather than queued behind more work than the pool can
 * do before the caller gives up. Async jobs and batch lines still queue. (Counting batch lines
 * would let a few large batches refuse every interactive request, and the batch driver, seeing no
 * interactive work, would never yield to it.)
 * Each pool's backlog is read from Redis in the background at most every `refreshMs` (no round trip
 * on the request path) and counts what this process admitted since.
 */
export class BacklogGate {
  readonly #redis: RedisClient;
  readonly #keys: Keys;
  readonly #max: number;
  readonly #refreshMs: number;
  readonly #pools = new Map<string, { queued: number; readAt: number; reading: boolean }>();

  constructor(redis: RedisClient, keys: Keys, max: number, refreshMs = 100) {
    this.#redis = redis;
    this.#keys = keys;
    this.#max = max;
    this.#refreshMs = refreshMs;
  }

  /** Throws 503 `overloaded` when `pool`'s backlog has reached the bound; counts the request otherwise. */
  admit(pool: string): void {
    if (this.#max <= 0 || pool === '') return;
    let s = this.#pools.get(pool);
    if (!s) {
      s = { queued: 0, readAt: Number.NEGATIVE_INFINITY, reading: false };
      this.#pools.set(pool, s);
    }
    const state = s;
    if (!state.reading && performance.now() - state.readAt >= this.#refreshMs) {
      state.reading = true;
      poolBacklog(this.#redis, this.#keys, pool)
        .then(
          (b) => {
            state.queued = b.ahead;
          },
          // Redis unreachable: keep the last figure (admission's own Redis writes will fail anyway).
          () => {},
        )
        .finally(() => {
          state.readAt = performance.now();
          state.reading = false;
        });
    }
    if (state.queued >= this.#max) {
      throw new GatewayError({
        code: 'overloaded',
        message: `The ${pool} pool has ${state.queued} requests queued (the bound is ${this.#max}). Try again shortly.`,
        retryable: true,
        retryAfterMs: 1_000,
      });
    }
    state.queued++;
  }
}
