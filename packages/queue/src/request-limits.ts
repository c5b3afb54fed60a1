import type { JobData } from '@faregate/contracts/jobs';
import type { Keys } from './keys.ts';
import { luaScript, REDIS_NOW_MS } from './lua.ts';
import type { RedisClient } from './redis.ts';

const chargeScript = luaScript<{
  keys: [key: string, account: string];
  args: [keyRpm: number, keyTpm: number, accountRpm: number, accountTpm: number, tokens: number];
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
  await chargeScript(
    redis,
    [keys.requestLimit(data.account, data.key), keys.requestLimit(data.account)],
    [l.keyRpm ?? 0, l.keyTpm ?? 0, l.accountRpm ?? 0, l.accountTpm ?? 0, extra],
  );
}
