import { type RedisClient, sendEach } from '@faregate/queue/redis';
import { luaScript, REDIS_NOW_MS } from '@faregate/queue/lua';
import type { Keys } from '@faregate/queue/keys';
import type { RateLimitInfo } from '@faregate/providers/types';

/**
 * Requests-per-minute and tokens-per-minute limits shared by every process of a pool, per
 * provider key. A sliding window of 1/60-window buckets in one Redis hash; the partly expired
 * oldest bucket still counts, so the limiter errs on the safe side and no window of the configured
 * length ever sees more than the limit. Pauses learned from the provider (429 retry-after,
 * remaining = 0 with a reset time) live beside it and stop every process at once.
 *
 * Leases (opt-in, RATE_LEASE_MS) keep the round trip off the hot path: under an RPM limit (without TPM) one admission takes
 * a slice of the window's budget for this process (`leaseSize`, sized to what the limit allows in
 * `leaseMs`), and the rest of the slice is admitted locally until `leaseMs` has passed; what was
 * not used goes back to the window then. The window is padded by `leaseMs`, so a slot used up to
 * `leaseMs` after its lease counts as long as the provider's window holds it: no window at the
 * provider sees more than the limit, whichever process used which slot.
 */

// The window's scripts count time by Redis's clock (the redis-now.lua prelude), one clock for every
// process: a process that read its own clock and then stalled (or a host whose clock is behind)
// would count the window up to a bucket older than slots other processes had already counted, and
// admit past the limit (CI saw 31 calls at L = 30 within 1.2 s, across 3 worker processes).
// The acquire script (limiter.lua). KEYS: rate window, pause of one provider key (one hash tag,
// keys.rateWindow / keys.ratePause). Returns { 1, bucket, granted, now } when admitted, { 0, waitMs } when not.
const acquireScript = luaScript<{
  keys: [window: string, pause: string];
  args: [windowMs: number, bucketMs: number, rpm: number, tpm: number, tokens: number, want: number];
  result: [number, number, number?, number?];
}>(new URL('./limiter.lua', import.meta.url), { numberOfKeys: 2, prelude: [REDIS_NOW_MS] });
// Counts in the current bucket by Redis's clock, moving a slot out of `from` (limiter.move.lua).
const moveScript = luaScript<{
  keys: [window: string];
  args: [bucketMs: number, from: number, requests: number, tokens: number, expireMs: number];
  result: number;
}>(new URL('./limiter.move.lua', import.meta.url), { numberOfKeys: 1, prelude: [REDIS_NOW_MS] });

export interface LimitSettings {
  rpm?: number;
  tpm?: number;
  windowMs: number;
  /** Added to the window so sending → provider jitter never shows the provider more than the limit. */
  guardMs?: number;
  /** How long a lease's slots may be admitted locally (0: no leases; unset: see `leaseMsOf`). */
  leaseMs?: number | undefined;
  /** Most requests one lease takes (default 32). */
  leaseMax?: number;
}

/** How long a lease admits when `leaseMs` is not set and the limit is large enough (see `leaseMsOf`). */
export const AUTO_LEASE_MS = 250;

/**
 * `leaseMs` as set (0: no leases), or, unset, AUTO_LEASE_MS where a lease costs the limit under 1 %:
 * its padding of the window (AUTO_LEASE_MS ≤ 1 % of the window) and the rest of a lease that goes
 * back late (one lease ≤ 1 % of the limit, so a few processes keep ≥ 0.95 of it reachable). That is
 * a provider's usual limit (thousands of requests a minute) admitted without a Redis round trip
 * per request; a small limit or a short window keeps one round trip per request (exact admission:
 * a lease of a few slots held by a process that does not use them is a large share of such a limit).
 */
export function leaseMsOf(s: LimitSettings): number {
  if (s.leaseMs !== undefined) return s.leaseMs;
  if (!s.rpm || s.tpm || AUTO_LEASE_MS * 100 > s.windowMs) return 0;
  const size = Math.min(s.leaseMax ?? 32, Math.floor((s.rpm * AUTO_LEASE_MS) / s.windowMs));
  return size >= 2 && size * 100 <= s.rpm ? AUTO_LEASE_MS : 0;
}

const guardOf = (s: LimitSettings) => s.guardMs ?? Math.max(200, Math.ceil(s.windowMs * 0.02));

/** The window a slot is counted in: the limit's, plus the jitter guard, plus a lease's validity. */
const paddedWindow = (s: LimitSettings) => s.windowMs + guardOf(s) + leaseMsOf(s);

/**
 * The window's bucket length (a sixtieth of the guarded window). Not of the padded one: whether a
 * lease pads the window changes with the limit (`leaseMsOf`), and buckets of another length are
 * other fields, so the counts in the window (what every process admitted, what the provider
 * reported used) would vanish whenever the limit changed.
 */
const bucketMs = (s: LimitSettings) => Math.max(1, Math.floor((s.windowMs + guardOf(s)) / 60));

/**
 * Requests one lease takes: what the limit allows in a lease's validity (so a lease is a small
 * share of the window), at least 1 (no lease), at most `leaseMax`. TPM admissions are not leased:
 * each request's token estimate differs.
 */
export function leaseSize(s: LimitSettings): number {
  if (!s.rpm || s.tpm || leaseMsOf(s) <= 0) return 1;
  return Math.max(1, Math.min(s.leaseMax ?? 32, Math.floor((s.rpm * leaseMsOf(s)) / s.windowMs)));
}

export type Admission =
  /** `at`: when the slot was counted (the admission, or its lease): `touch` re-dates it if sent much later. */
  { ok: true; keyIndex: number; bucket: number; tokens: number; at: number } | { ok: false; waitMs: number };

/** The unused rest of a lease: slots counted in `bucket` at `at`, admitted locally until `until`. */
interface Lease {
  left: number;
  bucket: number;
  at: number;
  until: number;
}

export class PoolLimiter {
  readonly #redis: RedisClient;
  readonly #keys: Keys;
  readonly #provider: string;
  readonly #keyCount: number;
  #next = 0;
  settings: LimitSettings;

  /** Per provider key: until when (epoch ms) a learned pause holds, as this process last saw it. */
  readonly #pausedUntil: number[];
  /** When this process last paused each key itself (a refresh that began before keeps it). */
  readonly #pausedAt: number[] = [];
  /** Pauses of each key this process is writing to Redis (a refresh cannot read them back yet). */
  readonly #pausing: number[] = [];
  /** Per provider key: this process's lease, if any. */
  readonly #leases: (Lease | undefined)[] = [];
  /** The lease request in flight, which concurrent admissions wait for. */
  #leasing: Promise<Admission> | undefined;
  /** Redis's clock less this process's, as the last admission saw it (touch's guess of Redis's bucket). */
  #skewMs = 0;

  constructor(redis: RedisClient, keys: Keys, provider: string, keyCount: number, settings: LimitSettings) {
    this.#pausedUntil = Array.from({ length: Math.max(1, keyCount) }, () => 0);
    this.#redis = redis;
    this.#keys = keys;
    this.#provider = provider;
    this.#keyCount = Math.max(1, keyCount);
    this.settings = settings;
  }

  #bucketKey(i: number) {
    return this.#keys.rateWindow(this.#provider, i);
  }

  #pauseKey(i: number) {
    return this.#keys.ratePause(this.#provider, i);
  }

  /**
   * Takes a slot on one of the provider keys (rotating), or says how long the whole pool must wait.
   * From this process's lease when it has one (no round trip), else from the shared window, taking
   * a new lease with it.
   */
  async acquire(tokens: number): Promise<Admission> {
    const want = leaseSize(this.settings);
    if (want <= 1) return this.#acquireShared(tokens, 1);
    // Concurrent admissions share one lease request: they wait for it and take from its slice.
    for (;;) {
      const local = this.#fromLease();
      if (local) return local;
      if (!this.#leasing) break;
      const r = await this.#leasing;
      if (!r.ok) return r;
    }
    const leasing = this.#acquireShared(tokens, want);
    this.#leasing = leasing;
    try {
      return await leasing;
    } finally {
      if (this.#leasing === leasing) this.#leasing = undefined;
    }
  }

  async #acquireShared(tokens: number, want: number): Promise<Admission> {
    const { rpm = 0, tpm = 0 } = this.settings;
    let wait = Number.POSITIVE_INFINITY;
    for (let n = 0; n < this.#keyCount; n++) {
      const i = this.#next++ % this.#keyCount;
      // The window is padded (default 2 %, at least 200 ms, plus a lease's validity) so the jitter
      // between sending and the request reaching the provider, and a leased slot used a little
      // later, do not make the provider see more than the limit.
      const padded = paddedWindow(this.settings);
      const at = Date.now();
      const [ok, v, granted = 1, redisNow] = await acquireScript(
        this.#redis,
        [this.#bucketKey(i), this.#pauseKey(i)],
        [padded, bucketMs(this.settings), rpm, tpm, tpm > 0 ? tokens : 0, want],
      );
      if (ok === 1) {
        if (redisNow !== undefined) this.#skewMs = redisNow - at;
        if (granted > 1) {
          this.#giveBackLease(i);
          this.#leases[i] = { left: granted - 1, bucket: v, at, until: at + leaseMsOf(this.settings) };
        }
        return { ok: true, keyIndex: i, bucket: v, tokens: tpm > 0 ? tokens : 0, at };
      }
      wait = Math.min(wait, v);
    }
    return { ok: false, waitMs: Math.ceil(wait) };
  }

  /** A slot from a lease still valid, on a key no learned pause holds (as this process knows them). */
  #fromLease(): Admission | undefined {
    const now = Date.now();
    for (let n = 0; n < this.#keyCount; n++) {
      const i = (this.#next + n) % this.#keyCount;
      const l = this.#leases[i];
      if (!l) continue;
      if (now >= l.until || (this.#pausedUntil[i] ?? 0) > now) {
        this.#giveBackLease(i);
        continue;
      }
      if (l.left <= 0) continue;
      l.left--;
      this.#next = i + 1;
      return { ok: true, keyIndex: i, bucket: l.bucket, tokens: 0, at: l.at };
    }
    return undefined;
  }

  /** Returns a lease's unused slots to the shared window (fire and forget: an error only errs safe). */
  #giveBackLease(i: number): void {
    const l = this.#leases[i];
    this.#leases[i] = undefined;
    if (!l || l.left <= 0) return;
    void this.#redis.hincrby(this.#bucketKey(i), `r${l.bucket}`, -l.left).catch(() => {});
  }

  /** Gives back every lease's unused slots (on shutdown, or when the limits change). */
  releaseLeases(): void {
    for (let i = 0; i < this.#keyCount; i++) this.#giveBackLease(i);
  }

  /**
   * Re-dates an admission to now, just before the request is sent: the provider counts requests
   * when they arrive, and the time between admission and sending (queueing, a new connection, a
   * loaded machine) must not let a window at the provider hold more than the limit. A send within
   * a lease's validity of the slot's counting needs nothing: the window is padded by it. Nor does
   * one still in the slot's bucket (as this process guesses Redis's clock; a wrong guess near a
   * bucket's edge leaves the slot one bucket early, which the guard absorbs). The move itself goes
   * by Redis's clock.
   */
  async touch(a: Extract<Admission, { ok: true }>): Promise<void> {
    const t = Date.now();
    if (t - a.at <= leaseMsOf(this.settings)) return;
    const size = bucketMs(this.settings);
    a.at = t;
    if (Math.floor((t + this.#skewMs) / size) === a.bucket) return;
    a.bucket = await moveScript(
      this.#redis,
      [this.#bucketKey(a.keyIndex)],
      [size, a.bucket, 1, a.tokens, paddedWindow(this.settings) * 2],
    );
  }

  /**
   * Counts requests and tokens the provider reported as already used in its window (`used`) in the
   * current bucket of provider key `keyIndex`'s window, when a learned limit starts being enforced:
   * what the window did not count while the limit was not enforced, so the window and the
   * provider's own count agree (over-counting errs safe).
   */
  async seed(keyIndex: number, used: { requests: number; tokens: number }): Promise<void> {
    if (used.requests <= 0 && used.tokens <= 0) return;
    await moveScript(
      this.#redis,
      [this.#bucketKey(keyIndex % this.#keyCount)],
      [
        bucketMs(this.settings),
        -1,
        Math.max(0, Math.ceil(used.requests)),
        Math.max(0, Math.ceil(used.tokens)),
        paddedWindow(this.settings) * 2,
      ],
    );
  }

  /** Replaces the token estimate by the actual usage once the call is over. */
  async settle(a: Extract<Admission, { ok: true }>, actualTokens: number): Promise<void> {
    if (!this.settings.tpm || actualTokens === a.tokens) return;
    await this.#redis.hincrby(this.#bucketKey(a.keyIndex), `t${a.bucket}`, actualTokens - a.tokens);
  }

  /**
   * Admission without a shared limit: no Redis round trip. The next provider key (rotating) that no
   * learned pause holds, as this process knows the pauses: its own at once, every other process's
   * from `refreshPauses` (run on a timer, not per request).
   */
  admitLocal(): Admission {
    const now = Date.now();
    let wait = Number.POSITIVE_INFINITY;
    for (let n = 0; n < this.#keyCount; n++) {
      const i = this.#next++ % this.#keyCount;
      const until = this.#pausedUntil[i] ?? 0;
      if (until <= now) return { ok: true, keyIndex: i, bucket: 0, tokens: 0, at: now };
      wait = Math.min(wait, until - now);
    }
    return { ok: false, waitMs: Math.ceil(wait) };
  }

  /**
   * Reads every provider key's pause (one pipelined round trip; each key's pause has a hash tag of
   * its own, so one PTTL each on a Redis Cluster) into the local view, and gives
   * back what leases that ran out unused still hold (run on a timer).
   */
  async refreshPauses(): Promise<void> {
    const t = Date.now();
    for (let i = 0; i < this.#keyCount; i++)
      if ((this.#leases[i]?.until ?? Infinity) <= t) this.#giveBackLease(i);
    const res = await sendEach(
      this.#redis,
      Array.from({ length: this.#keyCount }, (_, i) => ['pttl', this.#pauseKey(i)] as const),
    );
    const now = Date.now();
    res.forEach((ttl, i) => {
      // A pause this process set while the read was under way, or is still writing, may be newer
      // than what was read (its write went out after the read): it stands until a refresh that
      // starts after its write reads it back.
      if ((this.#pausing[i] ?? 0) > 0 || (this.#pausedAt[i] ?? -1) >= t) return;
      if (typeof ttl === 'number') this.#pausedUntil[i] = ttl > 0 ? now + ttl : 0;
    });
  }

  /** Stops every process from using this provider key for `ms` (429 retry-after, exhausted budget). */
  async pause(keyIndex: number, ms: number): Promise<void> {
    if (ms <= 0) return;
    const i = keyIndex % this.#keyCount;
    this.#pausedAt[i] = Date.now();
    this.#pausedUntil[i] = Math.max(this.#pausedUntil[i] ?? 0, Date.now() + Math.ceil(ms));
    this.#pausing[i] = (this.#pausing[i] ?? 0) + 1;
    try {
      // Never shorten a longer pause another process already set.
      const key = this.#pauseKey(keyIndex);
      const cur = await this.#redis.pttl(key);
      if (cur < ms) await this.#redis.set(key, '1', 'PX', Math.ceil(ms));
    } finally {
      this.#pausing[i] = (this.#pausing[i] ?? 1) - 1;
      this.#pausedAt[i] = Date.now();
    }
  }

  /** Told every response's rate-limit headers (the pool learns its limits from them: effective.ts). */
  observer: ((keyIndex: number, info: RateLimitInfo) => void) | undefined;

  /** Paces the pool from the provider's own rate-limit headers, before a 429 happens. */
  async learn(keyIndex: number, info: RateLimitInfo): Promise<number> {
    this.observer?.(keyIndex % this.#keyCount, info);
    let pauseMs = 0;
    if (info.remainingRequests === 0 && info.resetRequestsMs)
      pauseMs = Math.max(pauseMs, info.resetRequestsMs);
    if (info.remainingTokens === 0 && info.resetTokensMs) pauseMs = Math.max(pauseMs, info.resetTokensMs);
    if (info.remainingInputTokens === 0 && info.resetInputTokensMs)
      pauseMs = Math.max(pauseMs, info.resetInputTokensMs);
    if (info.remainingOutputTokens === 0 && info.resetOutputTokensMs)
      pauseMs = Math.max(pauseMs, info.resetOutputTokensMs);
    if (pauseMs > 0) await this.pause(keyIndex, pauseMs);
    return pauseMs;
  }
}
