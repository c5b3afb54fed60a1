import type { ModelPrice } from './models.ts';
import { usdToMicros } from './money.ts';

/**
 * What a call costs at a price: the one formula (settlement, the worker's `usage.cost`) and the
 * most a call may cost (admission holds). Which price a model name has is `prices.ts`'s to say.
 */

/** The token counts a call is priced on (a usage event's, a completion's normalized usage). */
export interface CallTokens {
  /** All input tokens, cached and cache-write ones included: the prompt size tiers look at. */
  inputTokens: number;
  cachedInputTokens: number;
  /** All cache-write tokens, 1-hour ones included. */
  cacheWriteTokens: number;
  /** Cache-write tokens written with a 1-hour TTL (subset of cacheWriteTokens; absent = none). */
  cacheWrite1hTokens?: number;
  /** All output tokens, reasoning included (reasoning is not charged again). */
  outputTokens: number;
}

/**
 * Cost of one provider call in µUSD: every token class at its own price (the tier of the call's
 * prompt size, if the price has tiers), summed exactly (in µUSD × 1e-6 units) and rounded once,
 * up: a call never costs less than its tokens do (rounded half up, every call under half a µUSD, a
 * few-token embedding say, was free, however often it was made; rounding up costs a call under
 * 1 µUSD more). `inputTokens` includes cached and cache-write tokens, so only the remainder is
 * charged at the plain input price. Reasoning tokens are part of `outputTokens` and are not
 * charged again.
 */
export function callCostMicros(t: CallTokens, price: MicroPrice): bigint {
  const r = ratesFor(price, t.inputTokens);
  const uncached = Math.max(0, t.inputTokens - t.cachedInputTokens - t.cacheWriteTokens);
  const write1h = Math.min(t.cacheWrite1hTokens ?? 0, t.cacheWriteTokens);
  const scaled =
    BigInt(uncached) * r.input +
    BigInt(t.cachedInputTokens) * r.cachedInput +
    BigInt(t.cacheWriteTokens - write1h) * r.cacheWrite +
    BigInt(write1h) * r.cacheWrite1h +
    BigInt(t.outputTokens) * r.output;
  return (scaled + 999_999n) / 1_000_000n;
}

/** The rates a call with a prompt of `promptTokens` pays: the tier of the highest threshold it exceeds. */
function ratesFor(price: MicroPrice, promptTokens: number): MicroRates {
  let rates: MicroRates = price;
  for (const t of price.tiers ?? []) if (promptTokens > t.abovePromptTokens) rates = t;
  return rates;
}

/** µUSD as the USD number callers see (`usage.cost`, OpenRouter's convention). */
export const microsToUsdNumber = (micros: bigint): number => Number(micros) / 1_000_000;

/**
 * µUSD per million tokens, every token class (missing cache prices fall back to the input price; a
 * missing 1-hour cache-write price to twice the input price, Anthropic's rule for such writes).
 */
export interface MicroRates {
  input: bigint;
  cachedInput: bigint;
  cacheWrite: bigint;
  cacheWrite1h: bigint;
  output: bigint;
}

/** A tier's rates: for a call whose prompt is longer than `abovePromptTokens`. */
export interface MicroTier extends MicroRates {
  abovePromptTokens: number;
}

/** A price in µUSD per M tokens: base rates, and tiers by prompt size (lowest threshold first). */
export interface MicroPrice extends MicroRates {
  tiers?: readonly Readonly<MicroTier>[];
}

/** Prices are read once (config, catalog) and never changed: each is parsed once, not per request. */
const microPrices = new WeakMap<ModelPrice, Readonly<MicroPrice>>();

function toMicroRates(p: Omit<ModelPrice, 'tiers'>): MicroRates {
  const input = usdToMicros(p.inputPerM);
  return {
    input,
    cachedInput: p.cachedInputPerM === undefined ? input : usdToMicros(p.cachedInputPerM),
    cacheWrite: p.cacheWritePerM === undefined ? input : usdToMicros(p.cacheWritePerM),
    cacheWrite1h: p.cacheWrite1hPerM === undefined ? 2n * input : usdToMicros(p.cacheWrite1hPerM),
    output: usdToMicros(p.outputPerM),
  };
}

export function toMicroPrice(p: ModelPrice): Readonly<MicroPrice> {
  let m = microPrices.get(p);
  if (m) return m;
  const tiers = (p.tiers ?? [])
    .map((t) => Object.freeze({ abovePromptTokens: t.abovePromptTokens, ...toMicroRates(t) }))
    .sort((a, b) => a.abovePromptTokens - b.abovePromptTokens);
  m = Object.freeze({ ...toMicroRates(p), ...(tiers.length > 0 ? { tiers: Object.freeze(tiers) } : {}) });
  microPrices.set(p, m);
  return m;
}

const sameRates = (a: MicroRates, b: MicroRates) =>
  a.input === b.input &&
  a.cachedInput === b.cachedInput &&
  a.cacheWrite === b.cacheWrite &&
  a.cacheWrite1h === b.cacheWrite1h &&
  a.output === b.output;

/**
 * A dated price as stored (base rates only: the `prices` table has no tiers) read with the tiers of
 * the model's listed price when it has that price's base rates, i.e. it is the listed price synced
 * at start (`syncPrices`). A stored price with other rates (an older price, an override without
 * tiers) is flat, as written.
 */
export function withListedTiers(stored: ModelPrice, listed: ModelPrice | undefined): ModelPrice {
  if (stored.tiers !== undefined || !listed?.tiers?.length) return stored;
  return sameRates(toMicroPrice(stored), toMicroPrice(listed)) ? listed : stored;
}

/**
 * The most one call with at most `inputTokens` prompt tokens and `outputTokens` output tokens can
 * cost at `price` (µUSD, rounded up): every prompt token at the dearest input class (an Anthropic
 * cache write costs more than plain input, a 1-hour one more still), every output token at the
 * output price, at the dearest of the tiers such a prompt may reach (a prompt bound past a tier's
 * threshold holds at that tier: the call's own prompt may be that long).
 */
export function maxCallCostMicros(price: ModelPrice, inputTokens: number, outputTokens: number): bigint {
  const p = toMicroPrice(price);
  // Only a model with cache-write prices writes to a cache (Anthropic's): its 1-hour writes may
  // cost more still. Others never report cache writes, whatever the fallback price says.
  const writes = price.cacheWritePerM !== undefined || price.cacheWrite1hPerM !== undefined;
  const costAt = (r: MicroRates) => {
    let input = r.input;
    if (r.cachedInput > input) input = r.cachedInput;
    if (r.cacheWrite > input) input = r.cacheWrite;
    if (writes && r.cacheWrite1h > input) input = r.cacheWrite1h;
    return (BigInt(inputTokens) * input + BigInt(outputTokens) * r.output + 999_999n) / 1_000_000n;
  };
  let most = costAt(p);
  for (const t of p.tiers ?? []) {
    if (inputTokens <= t.abovePromptTokens) break;
    const c = costAt(t);
    if (c > most) most = c;
  }
  return most;
}
