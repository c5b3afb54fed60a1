import { performance } from 'node:perf_hooks';
import { GatewayError } from '@faregate/contracts/errors';
import { poolBacklog } from '@faregate/queue/backlog';
import type { Keys } from '@faregate/queue/keys';
import type { RedisClient } from '@faregate/queue/redis';

/**
 * Load shedding (MAX_POOL_BACKLOG): a request whose caller waits on the answer, for a pool whose
 * backlog (queued and running, the figure KEDA scales on) has reached the bound, is refused at once
 * with 503 `overloaded` and retry-after, before any hold or enqueue, rather than queued behind more
 * work than the pool can do before the caller gives up. Async jobs and batch lines still queue.
 * Each pool's backlog is read from Redis in the background at most every `refreshMs` (no round trip
 * on the request path) and counts what this process admitted since.
 */
export class BacklogGate {
  readonly #redis: RedisClient;
  readonly #keys: Keys;
  readonly #max: number;
  readonly #refreshMs: number;
  readonly #pools = new Map<string, { total: number; readAt: number; reading: boolean }>();

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
      s = { total: 0, readAt: Number.NEGATIVE_INFINITY, reading: false };
      this.#pools.set(pool, s);
    }
    const state = s;
    if (!state.reading && performance.now() - state.readAt >= this.#refreshMs) {
      state.reading = true;
      poolBacklog(this.#redis, this.#keys, pool)
        .then(
          (b) => {
            state.total = b.total;
          },
          // Redis unreachable: keep the last figure (admission's own Redis writes will fail anyway).
          () => {},
        )
        .finally(() => {
          state.readAt = performance.now();
          state.reading = false;
        });
    }
    if (state.total >= this.#max) {
      throw new GatewayError({
        code: 'overloaded',
        message: `The ${pool} pool has ${state.total} requests queued or running (the bound is ${this.#max}). Try again shortly.`,
        retryable: true,
        retryAfterMs: 1_000,
      });
    }
    state.total++;
  }
}
