import type { FastifyInstance } from 'fastify';
import type { RedisClient } from '@faregate/queue/redis';
import { GatewayError } from '@faregate/contracts/errors';
import type { Keys } from '@faregate/queue/keys';
import { checkRequestLimits, type LimitCaps } from '@faregate/queue/request-limits';

/**
 * Requests and tokens per minute per API key and per account, global across every ingress process:
 * one Redis script per admission checks every limit of the request and takes from all of them or
 * none (packages/queue/src/request-limits.check.lua). Limits are token buckets as OpenAI counts its own (a bucket holds the
 * limit and refills over a minute), and a limited key's responses carry OpenAI's `x-ratelimit-*`
 * headers. The limits travel with the key (its cached lookup, auth.ts): an unlimited key costs
 * nothing here.
 */

/** A key's and its account's limits (per minute); absent: none. */
export type RequestLimits = LimitCaps;

/** The tightest request and token limit after an admission (what the headers say). */
export interface LimitState {
  requests?: { limit: number; remaining: number; resetMs: number };
  tokens?: { limit: number; remaining: number; resetMs: number };
}

/** True when any limit is set (only then does admission run the script). */
export const hasLimits = (l: RequestLimits | undefined): l is RequestLimits =>
  !!l && !!(l.keyRpm || l.keyTpm || l.accountRpm || l.accountTpm);

/**
 * Tokens a request counts against a tokens limit when admitted, as OpenAI estimates them: about
 * one per 4 bytes of prompt (`promptBytes`: the route's byte bound), plus `max_tokens` when given.
 */
export const admissionTokens = (promptBytes: number, maxTokens: number | undefined) =>
  Math.ceil(promptBytes / 4) + (maxTokens ?? 0);

/**
 * Admits one request of `accountId`/`keyId` counting `tokens`, or throws `rate_limit_exceeded`
 * (429 with `retry-after`). Either way `onState` gets the limits' state for the response headers.
 */
export async function admitRequest(
  redis: RedisClient,
  keys: Keys,
  who: { accountId: string; keyId: string },
  limits: RequestLimits,
  tokens: number,
  onState: (s: LimitState) => void,
): Promise<void> {
  const [ok, waitMs, rLimit, rLeft, rReset, tLimit, tLeft, tReset, which = 0] = await checkRequestLimits(
    redis,
    keys,
    who,
    limits,
    tokens,
  );
  const state: LimitState = {};
  if (rLimit) state.requests = { limit: rLimit, remaining: rLeft ?? 0, resetMs: rReset ?? 0 };
  if (tLimit) state.tokens = { limit: tLimit, remaining: tLeft ?? 0, resetMs: tReset ?? 0 };
  onState(state);
  if (ok === 1) return;
  // The limit that refused (script order: key rpm, key tpm, account rpm, account tpm).
  const scope = which <= 2 ? 'this API key' : 'this account';
  const what = which % 2 === 1 ? 'requests' : 'tokens';
  const limit = [limits.keyRpm, limits.keyTpm, limits.accountRpm, limits.accountTpm][which - 1];
  if (waitMs === -1) {
    throw new GatewayError({
      code: 'rate_limit_exceeded',
      message: `Request too large: about ${tokens} tokens, more than the ${limit} tokens per minute of ${scope} allow. Send a shorter prompt or a lower max_tokens.`,
      // Waiting cannot help: no retry-after (errors.ts), and a batch line fails rather than waits.
      retryable: false,
    });
  }
  throw new GatewayError({
    code: 'rate_limit_exceeded',
    message: `Rate limit reached for ${what} per minute of ${scope}: limit ${limit}. Please try again in ${goDuration(waitMs ?? 0)}.`,
    retryAfterMs: Math.max(1, waitMs ?? 1),
  });
}

/** Go `time.Duration` text, as OpenAI writes its resets: `12ms`, `1s`, `6m0s`, `1m2.5s`. */
export function goDuration(ms: number): string {
  const total = Math.max(0, Math.round(ms));
  if (total < 1000) return `${total}ms`;
  const m = Math.floor(total / 60_000);
  const s = Number(((total % 60_000) / 1000).toFixed(3));
  return m > 0 ? `${m}m${s}s` : `${s}s`;
}

/** OpenAI's `x-ratelimit-*` headers for a limit state. */
export function limitHeaders(s: LimitState): Record<string, string> {
  const h: Record<string, string> = {};
  if (s.requests) {
    h['x-ratelimit-limit-requests'] = String(s.requests.limit);
    h['x-ratelimit-remaining-requests'] = String(s.requests.remaining);
    h['x-ratelimit-reset-requests'] = goDuration(s.requests.resetMs);
  }
  if (s.tokens) {
    h['x-ratelimit-limit-tokens'] = String(s.tokens.limit);
    h['x-ratelimit-remaining-tokens'] = String(s.tokens.remaining);
    h['x-ratelimit-reset-tokens'] = goDuration(s.tokens.resetMs);
  }
  return h;
}

/**
 * Sends a limited key's `x-ratelimit-*` headers on its response, success or error alike: the state
 * admission left on the request's principal (`Principal.limitState`).
 */
export function registerLimitHeaders(app: FastifyInstance): void {
  app.addHook('onSend', async (req, reply, payload) => {
    const s = req.principal?.limitState;
    if (s) reply.headers(limitHeaders(s));
    return payload;
  });
}
