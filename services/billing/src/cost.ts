import { callCostMicros, type MicroPrice, toMicroPrice as fromModelPrice } from '@faregate/catalog/prices';

export type { MicroPrice };

/** A stored price row (numeric strings, null cache prices) → µUSD per M tokens (see the catalog's `toMicroPrice`). */
export function toMicroPrice(p: {
  inputPerM: string;
  cachedInputPerM: string | null;
  cacheWritePerM: string | null;
  /** Rows written before migration 0010 have none. */
  cacheWrite1hPerM?: string | null;
  outputPerM: string;
}): MicroPrice {
  return fromModelPrice({
    inputPerM: p.inputPerM,
    outputPerM: p.outputPerM,
    ...(p.cachedInputPerM === null ? {} : { cachedInputPerM: p.cachedInputPerM }),
    ...(p.cacheWritePerM === null ? {} : { cacheWritePerM: p.cacheWritePerM }),
    ...(p.cacheWrite1hPerM == null ? {} : { cacheWrite1hPerM: p.cacheWrite1hPerM }),
  });
}

/** The cost of one call: the catalog's one formula (`callCostMicros`), also what the worker reports. */
export const eventCostMicros = callCostMicros;
