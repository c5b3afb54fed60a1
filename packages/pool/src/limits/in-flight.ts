import type { RedisClient } from '@faregate/queue/redis';
import type { Keys } from '@faregate/queue/keys';
import { luaScript } from '@faregate/queue/lua';

// in-flight.lua. KEYS: BullMQ meta, active, the lane's runs, marker, wait, prioritized (one hash tag).
const inFlightScript = luaScript<{
  keys: [meta: string, active: string, lane: string, marker: string, wait: string, prioritized: string];
  args: [op: 'acquire' | 'release' | 'renew' | 'limit', limit: number, leaseMs: number, ...runs: string[]];
  result: number;
}>(new URL('./in-flight.lua', import.meta.url), { numberOfKeys: 6 });

/**
 * A pool's max-in-flight, for BullMQ runs and fast-lane runs together, across every process. BullMQ
 * counts its own active jobs against its global concurrency; lane runs are counted in a zset beside
 * BullMQ's keys (one hash tag), and the script that adds or removes one sets BullMQ's concurrency to
 * the limit minus the lane runs in flight, so no moment has more than the limit in flight. A lane
 * run holds a lease (renewed while it runs): a process killed with -9 stops counting when its
 * leases lapse. Without a limit nothing is counted and BullMQ has no global concurrency.
 */
export class InFlightGate {
  readonly #redis: RedisClient;
  readonly #keys: [string, string, string, string, string, string];
  readonly #leaseMs: number;
  readonly #mine = new Set<string>();
  /** The pool's max-in-flight (undefined: none). */
  limit: number | undefined;

  constructor(redis: RedisClient, keys: Keys, provider: string, leaseMs: number) {
    this.#redis = redis;
    const b = (part: string) => keys.bull(provider, part);
    this.#keys = [
      b('meta'),
      b('active'),
      keys.laneInFlight(provider),
      b('marker'),
      b('wait'),
      b('prioritized'),
    ];
    this.#leaseMs = leaseMs;
  }

  /** Counts a lane run in flight if the pool has room for it (one round trip); false: the pool is full. */
  async acquire(runId: string): Promise<boolean> {
    if (!this.limit) return true;
    const ok =
      (await inFlightScript(this.#redis, this.#keys, ['acquire', this.limit, this.#leaseMs, runId])) === 1;
    if (ok) this.#mine.add(runId);
    return ok;
  }

  /** The run ended: its room goes back to the pool (BullMQ's waiting jobs are woken). */
  async release(runId: string): Promise<void> {
    if (!this.#mine.delete(runId)) return;
    await inFlightScript(this.#redis, this.#keys, ['release', this.limit ?? 0, this.#leaseMs, runId]);
  }

  /** Renews the leases of this process's runs (on a timer, every third of a lease). */
  async renew(): Promise<void> {
    if (this.#mine.size === 0 && !this.limit) return;
    await inFlightScript(this.#redis, this.#keys, ['renew', this.limit ?? 0, this.#leaseMs, ...this.#mine]);
  }

  /** Applies a new limit (or none): BullMQ's concurrency becomes the limit minus the lane runs in flight. */
  async setLimit(limit: number | undefined): Promise<void> {
    this.limit = limit;
    await inFlightScript(this.#redis, this.#keys, ['limit', limit ?? 0, this.#leaseMs]);
  }
}
