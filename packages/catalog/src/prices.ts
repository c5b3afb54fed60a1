import { BUILTIN_MODELS, type CatalogModel, type ModelPrice } from './models.ts';
import { usdToMicros } from './money.ts';

/**
 * The one price resolution of the gateway: admission holds (ingress), the model list, and
 * settlement (billing) all ask `PriceTable.resolvePrice`. Billing builds its table from the
 * `prices` rows in Postgres (dated history) and may cache it, but never matches names itself.
 */

/** A price effective from `from` (epoch ms) for a catalog key (as stored in the `prices` table). */
export interface DatedPrice {
  provider: string;
  model: string;
  from: number;
  price: ModelPrice;
}

export interface ResolvedPrice {
  provider: string;
  /** The id the price is listed under (the catalog id a dated or aliased name resolved to). */
  model: string;
  price: ModelPrice;
  /** A self-hosted pool: free on purpose unless the routing file prices it. */
  selfHosted: boolean;
}

/** Pools that run on the operator's own hardware: zero unless configured (`prices` in the routing file). */
export const SELF_HOSTED_PROVIDERS: readonly string[] = ['llama'];

const FREE: ModelPrice = { inputPerM: '0', outputPerM: '0' };
/** `-20251001`, `-2024-08-06`: a provider's dated snapshot of a model. */
const DATED = /-(\d{8}|\d{4}-\d{2}-\d{2})$/;
/** Gemini's stable versions (`gemini-2.0-flash-001`). */
const VERSIONED = /-\d{3}$/;

const keyOf = (provider: string, model: string) => `${provider}\u0000${model}`;
/** Names whose catalog id is remembered (PriceTable.canonicalId), at most. */
const CANONICAL_MEMO = 4_096;

export interface PriceTableOptions {
  /** Dated prices (billing: the `prices` table); for a key listed here they win over the model's own price. */
  history?: readonly DatedPrice[];
  selfHosted?: Iterable<string>;
}

/**
 * Known models and their prices, looked up by the names providers serve and callers use. Every
 * table is a `Map`: names come from callers and providers, never index a plain object.
 */
export class PriceTable {
  readonly #models = new Map<string, CatalogModel>();
  /** `provider\0alias` → catalog id. */
  readonly #aliases = new Map<string, string>();
  /** Oldest first. */
  readonly #history = new Map<string, DatedPrice[]>();
  readonly #selfHosted: Set<string>;

  constructor(models: readonly CatalogModel[] = BUILTIN_MODELS, opts: PriceTableOptions = {}) {
    for (const m of models) this.#models.set(keyOf(m.provider, m.id), m);
    for (const m of models) {
      for (const a of m.aliases) {
        const k = keyOf(m.provider, a);
        if (!this.#models.has(k) && !this.#aliases.has(k)) this.#aliases.set(k, m.id);
      }
    }
    for (const d of opts.history ?? []) {
      const k = keyOf(d.provider, d.model);
      const list = this.#history.get(k) ?? [];
      list.push(d);
      this.#history.set(k, list);
    }
    for (const list of this.#history.values()) list.sort((a, b) => a.from - b.from);
    this.#selfHosted = new Set(opts.selfHosted ?? SELF_HOSTED_PROVIDERS);
  }

  /**
   * The catalog id `modelId` names on `provider`: itself, or (in this order) without `:latest` /
   * `-latest`, without a date or version suffix, the `-latest` name of an undated id, or an alias.
   * A more specific name always wins: a dated id with its own price is not read as the undated one.
   */
  canonicalId(provider: string, modelId: string): string | undefined {
    // Every call prices its model (a few regexes and lookups): the answer is kept per name. The
    // tables never change after construction; names come from callers too, so the memo is bounded.
    const k = keyOf(provider, modelId);
    const memo = this.#canonical.get(k);
    if (memo !== undefined) return memo === null ? undefined : memo;
    const id = this.#resolveId(provider, modelId);
    if (this.#canonical.size >= CANONICAL_MEMO) this.#canonical.clear();
    this.#canonical.set(k, id ?? null);
    return id;
  }

  readonly #canonical = new Map<string, string | null>();

  #resolveId(provider: string, modelId: string): string | undefined {
    const known = (id: string) =>
      this.#models.has(keyOf(provider, id)) || this.#history.has(keyOf(provider, id));
    const alias = (id: string) => this.#aliases.get(keyOf(provider, id));
    const candidates = [modelId];
    // Ollama's `name:latest` and Anthropic's `name-latest` both mean the newest `name`.
    const untagged = modelId.replace(/[:-]latest$/, '');
    if (untagged !== modelId) candidates.push(untagged);
    const undated = untagged.replace(DATED, '').replace(VERSIONED, '');
    if (undated !== untagged) candidates.push(undated, `${undated}-latest`);
    for (const c of candidates) if (known(c)) return c;
    for (const c of candidates) {
      const a = alias(c);
      if (a !== undefined) return a;
    }
    return undefined;
  }

  /** `name` is one the catalog lists on `provider` as it is: a model id, an alias, or a dated price's model. */
  knows(provider: string, name: string): boolean {
    const k = keyOf(provider, name);
    return this.#models.has(k) || this.#aliases.has(k) || this.#history.has(k);
  }

  /** Catalog data (context window, capabilities, list price) for a served or asked-for name. */
  model(provider: string, modelId: string): CatalogModel | undefined {
    const id = this.canonicalId(provider, modelId);
    return id === undefined ? undefined : this.#models.get(keyOf(provider, id));
  }

  /**
   * The price of `modelId` on `provider` at `at` (epoch ms): the latest dated price effective at or
   * before it (an instant older than every dated price takes the earliest: the catalog date is when
   * prices were taken, not when they started), else the listed price. Self-hosted providers are free
   * when nothing prices them. Undefined: the model has no price (refused unless unpriced models are
   * allowed; billing records such calls as `unpriced`, loudly).
   */
  resolvePrice(provider: string, modelId: string, at: number = Date.now()): ResolvedPrice | undefined {
    const id = this.canonicalId(provider, modelId);
    if (id !== undefined) {
      const list = this.#history.get(keyOf(provider, id));
      if (list && list.length > 0) {
        let found = list[0]!;
        for (const d of list) {
          if (d.from <= at) found = d;
          else break;
        }
        return { provider, model: id, price: found.price, selfHosted: this.#selfHosted.has(provider) };
      }
      const price = this.#models.get(keyOf(provider, id))?.price;
      if (price) return { provider, model: id, price, selfHosted: this.#selfHosted.has(provider) };
    }
    if (this.#selfHosted.has(provider)) return { provider, model: modelId, price: FREE, selfHosted: true };
    return undefined;
  }

  /** `resolvePrice` in µUSD per M tokens. */
  microPrice(provider: string, modelId: string, at: number = Date.now()): MicroPrice | undefined {
    const r = this.resolvePrice(provider, modelId, at);
    if (!r) return undefined;
    return toMicroPrice(r.price);
  }

  /**
   * What one provider call costs (µUSD), or undefined when the model has no price: the one cost of a
   * call, which billing settles and the worker reports to the caller as `usage.cost`.
   */
  callCostMicros(
    provider: string,
    modelId: string,
    tokens: CallTokens,
    at: number = Date.now(),
  ): bigint | undefined {
    const p = this.microPrice(provider, modelId, at);
    return p === undefined ? undefined : callCostMicros(tokens, p);
  }
}

/** The token counts a call is priced on (a usage event's, a completion's normalized usage). */
export interface CallTokens {
  /** All input tokens, cached and cache-write ones included. */
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
 * Cost of one provider call in µUSD: every token class at its own price, summed exactly (in
 * µUSD × 1e-6 units) and rounded once, up: a call never costs less than its tokens do (rounded
 * half up, every call under half a µUSD, a few-token embedding say, was free, however often it
 * was made; rounding up costs a call under 1 µUSD more). `inputTokens` includes cached and
 * cache-write tokens, so only the remainder is charged at the plain input price. Reasoning tokens
 * are part of `outputTokens` and are not charged again.
 */
export function callCostMicros(t: CallTokens, price: MicroPrice): bigint {
  const uncached = Math.max(0, t.inputTokens - t.cachedInputTokens - t.cacheWriteTokens);
  const write1h = Math.min(t.cacheWrite1hTokens ?? 0, t.cacheWriteTokens);
  const scaled =
    BigInt(uncached) * price.input +
    BigInt(t.cachedInputTokens) * price.cachedInput +
    BigInt(t.cacheWriteTokens - write1h) * price.cacheWrite +
    BigInt(write1h) * price.cacheWrite1h +
    BigInt(t.outputTokens) * price.output;
  return (scaled + 999_999n) / 1_000_000n;
}

/** µUSD as the USD number callers see (`usage.cost`, OpenRouter's convention). */
export const microsToUsdNumber = (micros: bigint): number => Number(micros) / 1_000_000;

/**
 * µUSD per million tokens, every token class (missing cache prices fall back to the input price; a
 * missing 1-hour cache-write price to twice the input price, Anthropic's rule for such writes).
 */
export interface MicroPrice {
  input: bigint;
  cachedInput: bigint;
  cacheWrite: bigint;
  cacheWrite1h: bigint;
  output: bigint;
}

/** Prices are read once (config, catalog) and never changed: each is parsed once, not per request. */
const microPrices = new WeakMap<ModelPrice, Readonly<MicroPrice>>();

export function toMicroPrice(p: ModelPrice): Readonly<MicroPrice> {
  let m = microPrices.get(p);
  if (m) return m;
  const input = usdToMicros(p.inputPerM);
  m = Object.freeze({
    input,
    cachedInput: p.cachedInputPerM === undefined ? input : usdToMicros(p.cachedInputPerM),
    cacheWrite: p.cacheWritePerM === undefined ? input : usdToMicros(p.cacheWritePerM),
    cacheWrite1h: p.cacheWrite1hPerM === undefined ? 2n * input : usdToMicros(p.cacheWrite1hPerM),
    output: usdToMicros(p.outputPerM),
  });
  microPrices.set(p, m);
  return m;
}

/**
 * The most one call with at most `inputTokens` prompt tokens and `outputTokens` output tokens can
 * cost at `price` (µUSD, rounded up): every prompt token at the dearest input class (an Anthropic
 * cache write costs more than plain input, a 1-hour one more still), every output token at the
 * output price.
 */
export function maxCallCostMicros(price: ModelPrice, inputTokens: number, outputTokens: number): bigint {
  const p = toMicroPrice(price);
  let input = p.input;
  if (p.cachedInput > input) input = p.cachedInput;
  if (p.cacheWrite > input) input = p.cacheWrite;
  // Only a model with cache-write prices writes to a cache (Anthropic's): its 1-hour writes may
  // cost more still. Others never report cache writes, whatever the fallback price says.
  const writes = price.cacheWritePerM !== undefined || price.cacheWrite1hPerM !== undefined;
  if (writes && p.cacheWrite1h > input) input = p.cacheWrite1h;
  const scaled = BigInt(inputTokens) * input + BigInt(outputTokens) * p.output;
  return (scaled + 999_999n) / 1_000_000n;
}
