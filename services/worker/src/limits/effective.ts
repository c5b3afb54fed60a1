import type { Redis } from 'ioredis';
import type { GatewayConfig } from '@faregate/catalog/gateway-config';
import { type LimitOverrides, parseLimitOverrides } from '@faregate/contracts/pool-control';
import type { Keys } from '@faregate/queue/keys';
import type { WorkerConfig } from '../config.ts';
import type { EffectiveLimits } from '../deps.ts';

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

/** Run-time overrides written by `PUT /admin/v1/providers/:provider/limits` (JSON; `null` clears a limit). */
export async function readOverrides(redis: Redis, keys: Keys, provider: string): Promise<LimitOverrides> {
  return parseLimitOverrides(await redis.get(keys.poolLimits(provider)));
}

export function merge(base: EffectiveLimits, o: LimitOverrides): EffectiveLimits {
  const pick = (k: 'rpm' | 'tpm' | 'maxInFlight') => (o[k] === null ? undefined : (o[k] ?? base[k]));
  return {
    rpm: pick('rpm'),
    tpm: pick('tpm'),
    maxInFlight: pick('maxInFlight'),
    attempts: o.attempts ?? base.attempts,
  };
}
