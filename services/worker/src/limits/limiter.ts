import type { Redis } from 'ioredis';
import { luaScript } from '@faregate/queue/lua';
import type { Keys } from '@faregate/queue/keys';
import type { RateLimitInfo } from '@faregate/providers/types';

/**
 * Requests-per-minute and tokens-per-minute limits shared by every process of a pool, per
 * provider key. A sliding window of 1/60-window buckets in one Redis hash; the partly expired
 * oldest bucket still counts, so the limiter errs on the safe side and no window of the configured
 * length ever sees more than the limit. Pauses learned from the provider (429 retry-after,
 * remaining = 0 with a reset time) live beside it and stop every process at once.
 */

// The acquire script (limiter.lua). KEYS: rate window, pause of one provider key (one hash tag,
// keys.rateWindow / keys.ratePause). Returns { 1, bucket } when admitted, { 0, waitMs } when not.
const acquireScript = luaScript<{
  keys: [window: string, pause: string];
  args: [now: number, windowMs: number, bucketMs: number, rpm: number, tpm: number, tokens: number];
  result: [number, number];
}>(new URL('./limiter.lua', import.meta.url), { numberOfKeys: 2 });

export interface LimitSettings {
  rpm?: number;
  tpm?: number;
  windowMs: number;
  /** Added to the window so sending → provider jitter never shows the provider more than the limit. */
  guardMs?: number;
}

const paddedWindow = (s: LimitSettings) =>
  s.windowMs + (s.guardMs ?? Math.max(200, Math.ceil(s.windowMs * 0.02)));

export type Admission =
  | { ok: true; keyIndex: number; bucket: number; tokens: number }
  | { ok: false; waitMs: number };

export class PoolLimiter {
  readonly #redis: Redis;
  readonly #keys: Keys;
  readonly #provider: string;
  readonly #keyCount: number;
  #next = 0;
  settings: LimitSettings;

  /** Per provider key: until when (epoch ms) a learned pause holds, as this process last saw it. */
  readonly #pausedUntil: number[];

  constructor(redis: Redis, keys: Keys, provider: string, keyCount: number, settings: LimitSettings) {
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

  /** Takes a slot on one of the provider keys (rotating), or says how long the whole pool must wait. */
  async acquire(tokens: number): Promise<Admission> {
    const { rpm = 0, tpm = 0 } = this.settings;
    let wait = Number.POSITIVE_INFINITY;
    for (let n = 0; n < this.#keyCount; n++) {
      const i = this.#next++ % this.#keyCount;
      // The window is padded (default 2 %, at least 200 ms) so the jitter between sending and the
      // request reaching the provider does not make the provider see more than the limit.
      const padded = paddedWindow(this.settings);
      const [ok, v] = await acquireScript(
        this.#redis,
        [this.#bucketKey(i), this.#pauseKey(i)],
        [Date.now(), padded, Math.max(1, Math.floor(padded / 60)), rpm, tpm, tpm > 0 ? tokens : 0],
      );
      if (ok === 1) return { ok: true, keyIndex: i, bucket: v, tokens: tpm > 0 ? tokens : 0 };
      wait = Math.min(wait, v);
    }
    return { ok: false, waitMs: Math.ceil(wait) };
  }

  /**
   * Re-dates an admission to now, just before the request is sent: the provider counts requests
   * when they arrive, and the time between admission and sending (queueing, a new connection, a
   * loaded machine) must not let a window at the provider hold more than the limit.
   */
  async touch(a: Extract<Admission, { ok: true }>): Promise<void> {
    const size = Math.max(1, Math.floor(paddedWindow(this.settings) / 60));
    const now = Math.floor(Date.now() / size);
    if (now === a.bucket) return;
    const key = this.#bucketKey(a.keyIndex);
    const m = this.#redis.multi().hincrby(key, `r${a.bucket}`, -1).hincrby(key, `r${now}`, 1);
    if (a.tokens > 0) m.hincrby(key, `t${a.bucket}`, -a.tokens).hincrby(key, `t${now}`, a.tokens);
    await m.exec();
    a.bucket = now;
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
      if (until <= now) return { ok: true, keyIndex: i, bucket: 0, tokens: 0 };
      wait = Math.min(wait, until - now);
    }
    return { ok: false, waitMs: Math.ceil(wait) };
  }

  /** Reads every provider key's pause (one pipelined round trip) into the local view. */
  async refreshPauses(): Promise<void> {
    const m = this.#redis.multi();
    for (let i = 0; i < this.#keyCount; i++) m.pttl(this.#pauseKey(i));
    const res = await m.exec();
    const now = Date.now();
    res?.forEach(([err, ttl], i) => {
      if (!err && typeof ttl === 'number') this.#pausedUntil[i] = ttl > 0 ? now + ttl : 0;
    });
  }

  /** Stops every process from using this provider key for `ms` (429 retry-after, exhausted budget). */
  async pause(keyIndex: number, ms: number): Promise<void> {
    if (ms <= 0) return;
    const i = keyIndex % this.#keyCount;
    this.#pausedUntil[i] = Math.max(this.#pausedUntil[i] ?? 0, Date.now() + Math.ceil(ms));
    // Never shorten a longer pause another process already set.
    const key = this.#pauseKey(keyIndex);
    const cur = await this.#redis.pttl(key);
    if (cur < ms) await this.#redis.set(key, '1', 'PX', Math.ceil(ms));
  }

  /** Paces the pool from the provider's own rate-limit headers, before a 429 happens. */
  async learn(keyIndex: number, info: RateLimitInfo): Promise<number> {
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
