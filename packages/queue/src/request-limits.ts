import type { JobData } from '@faregate/contracts/jobs';
import type { Keys } from './keys.ts';
import { luaScript, REDIS_NOW_MS } from './lua.ts';
import type { RedisClient } from './redis.ts';

/**
 * Per-key and per-account request limits: token buckets in Redis, one hash per key and per account
 * (fields r, t, at). Both scripts that touch them live here: admission (`checkRequestLimits`) and
 * the corrections after it (`adjustRequestLimits`).
 */
const checkScript = luaScript<{
  keys: [key: string, account: string];
  args: [keyRpm: number, keyTpm: number, accountRpm: number, accountTpm: number, tokens: number];
  result: number[];
}>(new URL('./request-limits.check.lua', import.meta.url), { numberOfKeys: 2, prelude: [REDIS_NOW_MS] });

/**
 * Admits one request counting `tokens` against every limit of `caps`, or none: the script's reply
 * `[ok, waitMs, rLimit, rLeft, rReset, tLimit, tLeft, tReset, which]` (request-limits.check.lua).
 */
export function checkRequestLimits(
  redis: RedisClient,
  keys: Keys,
  who: { accountId: string; keyId: string },
  caps: LimitCaps,
  tokens: number,
): Promise<number[]> {
  return checkScript(
    redis,
    [keys.requestLimit(who.accountId, who.keyId), keys.requestLimit(who.accountId)],
    [caps.keyRpm ?? 0, caps.keyTpm ?? 0, caps.accountRpm ?? 0, caps.accountTpm ?? 0, tokens],
  );
}

const chargeScript = luaScript<{
  keys: [key: string, account: string];
  args: [
    keyRpm: number,
    keyTpm: number,
    accountRpm: number,
    accountTpm: number,
    tokens: number,
    requests: number,
  ];
  result: number;
}>(new URL('./request-limits.charge.lua', import.meta.url), { numberOfKeys: 2, prelude: [REDIS_NOW_MS] });

/**
 * A provider call of `data` used `used` tokens: what its admission did not count (the first call is
 * covered by the tokens admission took, `limits.admitted`; later calls, retries and fallbacks, by
 * none) is taken from the key's and account's token limits. Only for a request whose key or account
 * has a tokens limit (`data.limits`); one Redis script.
 */
export async function chargeRequestLimits(
  redis: RedisClient,
  keys: Keys,
  data: Pick<JobData, 'account' | 'key' | 'limits'>,
  used: number,
  firstCall: boolean,
): Promise<void> {
  const l = data.limits;
  if (!l) return;
  const extra = used - (firstCall ? l.admitted : 0);
  if (extra <= 0) return;
  await adjustRequestLimits(redis, keys, { accountId: data.account, keyId: data.key }, l, extra, 0);
}

/** A key's and its account's per-minute limits (absent or 0: none). */
export interface LimitCaps {
  keyRpm?: number | undefined;
  keyTpm?: number | undefined;
  accountRpm?: number | undefined;
  accountTpm?: number | undefined;
}

/**
 * Takes `tokens` and `requests` from the key's and account's limits (negative: gives them back, up
 * to each limit), after admission: one Redis script (request-limits.charge.lua).
 */
export async function adjustRequestLimits(
  redis: RedisClient,
  keys: Keys,
  who: { accountId: string; keyId: string },
  caps: LimitCaps,
  tokens: number,
  requests: number,
): Promise<void> {
  await chargeScript(
    redis,
    [keys.requestLimit(who.accountId, who.keyId), keys.requestLimit(who.accountId)],
    [caps.keyRpm ?? 0, caps.keyTpm ?? 0, caps.accountRpm ?? 0, caps.accountTpm ?? 0, tokens, requests],
  );
}
