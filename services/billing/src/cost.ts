import { usdToMicros } from '@faregate/catalog/money';
import type { UsageEvent } from '@faregate/contracts/usage';

/** A price in µUSD per million tokens (exact integers: the catalog has ≤ 6 decimals). */
export interface MicroPrice {
  input: bigint;
  cachedInput: bigint;
  cacheWrite: bigint;
  output: bigint;
}

/** Decimal-string prices (as stored: numeric) → µUSD per M tokens. Missing cache prices fall back to input. */
export function toMicroPrice(p: {
  inputPerM: string;
  cachedInputPerM: string | null;
  cacheWritePerM: string | null;
  outputPerM: string;
}): MicroPrice {
  const input = usdToMicros(p.inputPerM);
  return {
    input,
    cachedInput: p.cachedInputPerM === null ? input : usdToMicros(p.cachedInputPerM),
    cacheWrite: p.cacheWritePerM === null ? input : usdToMicros(p.cacheWritePerM),
    output: usdToMicros(p.outputPerM),
  };
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
