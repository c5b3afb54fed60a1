import type { HeaderReader } from '../types.ts';

/** Parsing of the time hints providers send: Go durations, retry-after, RFC 3339 resets, protobuf durations. */

const GO_DURATION =
  /^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?!s))?(?:(\d+(?:\.\d+)?)s)?(?:(\d+(?:\.\d+)?)ms)?$/;
const NUMBER = /^\d+(?:\.\d+)?$/;

/** OpenAI `x-ratelimit-reset-*`: `12ms`, `6m0s`, `1h2m3.5s`. Azure sends bare integer seconds. */
export function parseGoDuration(value: string | null | undefined): number | undefined {
  if (!value) return undefined;
  const v = value.trim();
  if (NUMBER.test(v)) return Math.round(Number(v) * 1000);
  const m = GO_DURATION.exec(v);
  if (!m || v === '') return undefined;
  const [, h, min, s, ms] = m;
  const total =
    Number(h ?? 0) * 3_600_000 + Number(min ?? 0) * 60_000 + Number(s ?? 0) * 1000 + Number(ms ?? 0);
  return Math.round(total);
}

/** Anthropic resets: an RFC 3339 timestamp, turned into ms from `now` (never negative). */
export function untilTimestamp(value: string | null | undefined, now = Date.now()): number | undefined {
  if (!value) return undefined;
  const t = Date.parse(value);
  if (Number.isNaN(t)) return undefined;
  return Math.max(0, t - now);
}

/** `retry-after-ms` (float ms) first, then `retry-after` (seconds or an HTTP date), like the official SDKs. */
export function retryAfterMs(headers: HeaderReader, now = Date.now()): number | undefined {
  const ms = headers.get('retry-after-ms');
  if (ms !== null) {
    const n = Number.parseFloat(ms);
    if (Number.isFinite(n) && n >= 0) return Math.round(n);
  }
  const ra = headers.get('retry-after');
  if (ra !== null) {
    const trimmed = ra.trim();
    if (NUMBER.test(trimmed)) return Math.round(Number(trimmed) * 1000);
    const d = untilTimestamp(trimmed, now);
    if (d !== undefined) return d;
  }
  return undefined;
}

/** Protobuf duration (Gemini RetryInfo.retryDelay): `27s`, `1.5s`. */
export function parseProtoDuration(value: unknown): number | undefined {
  if (typeof value !== 'string') return undefined;
  const m = /^(\d+(?:\.\d+)?)s$/.exec(value.trim());
  return m ? Math.round(Number(m[1]) * 1000) : undefined;
}

/** A non-negative integer header, or undefined. */
export function intHeader(headers: HeaderReader, name: string): number | undefined {
  const v = headers.get(name);
  if (v === null) return undefined;
  const n = Number(v.trim());
  return Number.isFinite(n) && n >= 0 ? Math.floor(n) : undefined;
}
