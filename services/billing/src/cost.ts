import { type MicroPrice, toMicroPrice as fromModelPrice } from '@faregate/catalog/prices';
import type { UsageEvent } from '@faregate/contracts/usage';

export type { MicroPrice };

/** A stored price row (numeric strings, null cache prices) → µUSD per M tokens (see the catalog's `toMicroPrice`). */
export function toMicroPrice(p: {
  inputPerM: string;
  cachedInputPerM: string | null;
  cacheWritePerM: string | null;
  outputPerM: string;
}): MicroPrice {
  return fromModelPrice({
    inputPerM: p.inputPerM,
    outputPerM: p.outputPerM,
    ...(p.cachedInputPerM === null ? {} : { cachedInputPerM: p.cachedInputPerM }),
    ...(p.cacheWritePerM === null ? {} : { cacheWritePerM: p.cacheWritePerM }),
  });
}

type Tokens = Pick<UsageEvent, 'inputTokens' | 'cachedInputTokens' | 'cacheWriteTokens' | 'outputTokens'>;

/**
 * Cost of one provider call in µUSD: every token class at its own price, summed exactly (in
 * µUSD × 1e-6 units) and rounded once, half up. `inputTokens` includes cached and cache-write
 * tokens, so only the remainder is charged at the plain input price. Reasoning tokens are part of
 * `outputTokens` and are not charged again.
 */
export function eventCostMicros(t: Tokens, price: MicroPrice): bigint {
  const uncached = Math.max(0, t.inputTokens - t.cachedInputTokens - t.cacheWriteTokens);
  const scaled =
    BigInt(uncached) * price.input +
    BigInt(t.cachedInputTokens) * price.cachedInput +
    BigInt(t.cacheWriteTokens) * price.cacheWrite +
    BigInt(t.outputTokens) * price.output;
  return (scaled + 500_000n) / 1_000_000n;
}
