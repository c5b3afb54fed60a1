import type { RedisClient } from '@faregate/queue/redis';
import type { GatewayConfig } from '@faregate/catalog/gateway-config';
import {
  type LearnedLimits,
  type LimitOverrides,
  parseLearnedLimits,
  parseLimitOverrides,
} from '@faregate/contracts/pool-control';
import type { RateLimitInfo } from '@faregate/providers/types';
import type { Keys } from '@faregate/queue/keys';
import type { WorkerConfig } from '../config.ts';
import type { EffectiveLimits } from '../deps.ts';
import type { PoolLimiter } from './limiter.ts';

/** Limits from the config file, then the environment, then run-time overrides in Redis (admin API). */
export function baseLimits(config: WorkerConfig, file: GatewayConfig, provider: string): EffectiveLimits {
  const f = file.providers[provider]?.limits ?? {};
  return {
    rpm: config.WORKER_RPM ?? f.rpm,
    tpm: config.WORKER_TPM ?? f.tpm,
    maxInFlight: config.WORKER_MAX_IN_FLIGHT ?? f.maxInFlight,
    attempts: f.attempts ?? config.WORKER_ATTEMPTS,
  };
}

/** Configured limits with the run-time overrides of `PUT /admin/v1/providers/:provider/limits` (`null` clears a limit). */
export function merge(base: EffectiveLimits, o: LimitOverrides): EffectiveLimits {
  const pick = (k: 'rpm' | 'tpm' | 'maxInFlight') => (o[k] === null ? undefined : (o[k] ?? base[k]));
  return {
    rpm: pick('rpm'),
    tpm: pick('tpm'),
    maxInFlight: pick('maxInFlight'),
    attempts: o.attempts ?? base.attempts,
  };
}

/** A provider's per-minute figure as a share of the pool's window (RATE_WINDOW_MS; a minute by default). */
export const perWindow = (perMinute: number, windowMs: number) =>
  windowMs === 60_000 ? perMinute : Math.max(1, Math.floor((perMinute * windowMs) / 60_000));

/**
 * Configured limits first; a learned RPM/TPM (per minute, as providers state them) fills in where
 * none is configured, while it is enforced (`hotUntil`: the provider said a window was at least
 * half spent).
 */
export function withLearned(
  configured: EffectiveLimits,
  learned: LearnedLimits,
  now: number,
  windowMs: number,
): EffectiveLimits {
  if ((learned.hotUntil ?? 0) <= now) return configured;
  const scaled = (v?: number) => (v === undefined ? undefined : perWindow(v, windowMs));
  return {
    ...configured,
    rpm: configured.rpm ?? scaled(learned.rpm),
    tpm: configured.tpm ?? scaled(learned.tpm),
  };
}

/** A learned limit is enforced once the provider reports less than this share of it left. */
const HOT_SHARE = 0.5;
/** The learned hash expires a day after its last change (a key that left the pool stops counting). */
const LEARNED_TTL_MS = 86_400_000;

/**
 * A pool's limits in force: configured (`baseLimits`, then the admin API's overrides) and learned
 * from the provider's rate-limit headers, shared by every process of the pool through Redis
 * (`keys.poolLearned`; read in one round trip with the overrides on the refresh timer, written only
 * when something changes, never per request).
 *
 * A learned limit is enforced only while the provider says it could bind (a window at least half
 * spent), and for a window after that: below that, the provider's own count shows the pool far
 * from it, and admission stays without a Redis round trip (the fast path of a pool without
 * configured limits). When a learned limit starts being enforced, what the provider counted as used
 * is added to the shared window (`PoolLimiter.seed`), so the pool does not admit a second full
 * window on top of it.
 */
export class PoolLimits {
  readonly #redis: RedisClient;
  readonly #keys: Keys;
  readonly #provider: string;
  readonly #base: EffectiveLimits;
  readonly #windowMs: number;
  #overrides: LimitOverrides = {};
  /** The shared learned hash as last read or written by this process. */
  #hash: Record<string, string> = {};
  #learned: LearnedLimits = {};

  constructor(redis: RedisClient, keys: Keys, provider: string, base: EffectiveLimits, windowMs: number) {
    this.#redis = redis;
    this.#keys = keys;
    this.#provider = provider;
    this.#base = base;
    this.#windowMs = windowMs;
  }

  /** Limits in force now, from what this process knows. */
  current(now = Date.now()): EffectiveLimits {
    return withLearned(merge(this.#base, this.#overrides), this.#learned, now, this.#windowMs);
  }

  /** The learned limits as this process knows them. */
  get learned(): LearnedLimits {
    return this.#learned;
  }

  /** Re-reads overrides and learned limits (one round trip) and returns the limits in force. */
  async refresh(): Promise<EffectiveLimits> {
    // Two keys of no common hash tag: sent together (one round trip), not as one transaction.
    const [overrides, hash] = await Promise.all([
      this.#redis.get(this.#keys.poolLimits(this.#provider)),
      this.#redis.hgetall(this.#keys.poolLearned(this.#provider)),
    ]);
    this.#overrides = parseLimitOverrides(overrides);
    this.#hash = hash;
    this.#learned = parseLearnedLimits(hash);
    return this.current();
  }

  /**
   * One response's rate-limit headers for provider key `keyIndex` (sync; Redis is written only
   * when a learned limit changes or starts being enforced). Returns true when the limits in force
   * changed, so the caller applies them at once. The token limit learned is the input-token one
   * where the provider has separate input and output limits (Anthropic): the window counts input
   * and output together, which errs safe; the output limit is kept by the remaining/reset pause.
   */
  observe(keyIndex: number, info: RateLimitInfo, limiter: Pick<PoolLimiter, 'seed'>): boolean {
    const tokenLimit = info.limitInputTokens ?? info.limitTokens;
    const tokenLeft = info.limitInputTokens !== undefined ? info.remainingInputTokens : info.remainingTokens;
    const writes: Record<string, string> = {};
    // A limit is only ever lowered (until the record expires a day after its last change): OpenAI
    // states limits per model, and a pool serving several would otherwise rewrite it whenever the
    // model changes. The pool keeps the smallest, which errs safe.
    const learn = (field: string, v: number | undefined) => {
      const known = this.#hash[field];
      if (v === undefined || v <= 0 || (known !== undefined && Number(known) <= v)) return;
      writes[field] = String(v);
    };
    learn(`rpm:${keyIndex}`, info.limitRequests);
    learn(`tpm:${keyIndex}`, tokenLimit);
    const now = Date.now();
    const spent = (limit?: number, left?: number) =>
      limit !== undefined && left !== undefined && limit > 0 ? limit - left : undefined;
    const usedRequests = spent(info.limitRequests, info.remainingRequests);
    const usedTokens = spent(tokenLimit, tokenLeft);
    const hot =
      (usedRequests !== undefined &&
        info.limitRequests !== undefined &&
        usedRequests > info.limitRequests * HOT_SHARE) ||
      (usedTokens !== undefined && tokenLimit !== undefined && usedTokens > tokenLimit * HOT_SHARE);
    const hotUntil = this.#learned.hotUntil ?? 0;
    const starts = hot && hotUntil <= now;
    // Extended at most every half window, so a busy pool writes it about twice a window.
    if (hot && hotUntil - now < this.#windowMs / 2) writes.hotUntil = String(now + this.#windowMs);
    if (Object.keys(writes).length === 0) return false;
    const before = this.current(now);
    Object.assign(this.#hash, writes);
    this.#learned = parseLearnedLimits(this.#hash);
    const after = this.current(now);
    const key = this.#keys.poolLearned(this.#provider);
    void this.#redis
      .multi()
      .hset(key, writes)
      .pexpire(key, LEARNED_TTL_MS)
      .exec()
      .catch(() => {});
    if (starts) {
      // What the provider counted before the window did: only for limits that were not enforced.
      // (The provider counts per minute; the window may be shorter: its share, rounded up.)
      const share = (n = 0) => Math.ceil((n * this.#windowMs) / 60_000);
      const requests = !before.rpm && after.rpm ? share(usedRequests) : 0;
      const tokens = !before.tpm && after.tpm ? share(usedTokens) : 0;
      void limiter.seed(keyIndex, { requests, tokens }).catch(() => {});
    }
    return before.rpm !== after.rpm || before.tpm !== after.tpm;
  }
}
