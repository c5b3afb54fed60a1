import { type CallTokens, callCostMicros, type MicroPrice, toMicroPrice, withListedTiers } from './cost.ts';
import { BUILTIN_MODELS, type CatalogModel, type ModelPrice } from './models.ts';

// The cost formulas, where the gateway has always imported them from (`@faregate/catalog/prices`).
export {
  type CallTokens,
  callCostMicros,
  type MicroPrice,
  type MicroRates,
  type MicroTier,
  maxCallCostMicros,
  microsToUsdNumber,
  toMicroPrice,
} from './cost.ts';

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

/**
 * Pools whose model names carry Ollama's tags, where `name` and `name:latest` are one model: the
 * self-hosted pool (Ollama or vLLM behind the Ollama naming) and the Ollama preset. Elsewhere
 * `:latest` is no name a provider serves (`gpt-4o-mini:latest` is OpenAI's 404).
 */
export const TAGGED_PROVIDERS: readonly string[] = ['llama', 'ollama'];

const FREE: ModelPrice = { inputPerM: '0', outputPerM: '0' };
/** `-20251001`, `-2024-08-06`: a provider's dated snapshot of a model. */
const DATED = /-(\d{8}|\d{4}-\d{2}-\d{2})$/;
/** Gemini's stable versions (`gemini-2.0-flash-001`): only Gemini names its snapshots so. */
const VERSIONED = /-\d{3}$/;
const VERSIONED_PROVIDERS = new Set(['gemini']);
/** Ollama's default tag. */
const TAG = /:latest$/;

const keyOf = (provider: string, model: string) => `${provider}\u0000${model}`;
/** Names whose catalog id is remembered (PriceTable.canonicalId), at most. */
const CANONICAL_MEMO = 4_096;

export interface PriceTableOptions {
  /**
   * Dated prices (billing: the `prices` table); for a key listed here they win over the model's own
   * price. A dated price without `tiers` that has the model's own base rates is that price, tiers
   * included: the `prices` table stores base rates only.
   */
  history?: readonly DatedPrice[];
  selfHosted?: Iterable<string>;
  /** Providers whose names take Ollama's `:latest` tag (default TAGGED_PROVIDERS). */
  tagged?: Iterable<string>;
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
  readonly #tagged: Set<string>;

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
      list.push({ ...d, price: withListedTiers(d.price, this.#models.get(k)?.price) });
      this.#history.set(k, list);
    }
    for (const list of this.#history.values()) list.sort((a, b) => a.from - b.from);
    this.#selfHosted = new Set(opts.selfHosted ?? SELF_HOSTED_PROVIDERS);
    this.#tagged = new Set(opts.tagged ?? TAGGED_PROVIDERS);
  }

  /**
   * The catalog id `modelId` names on `provider`, or undefined: itself (a model id, an alias, a
   * dated price's model), else (in this order) without Ollama's `:latest` tag (tagged providers
   * only), without a snapshot suffix (a date; on Gemini, a `-NNN` version; see `pinsSnapshot`), the
   * `-latest` name of an undated id (Anthropic lists `claude-3-5-haiku-latest`, serves it dated),
   * or an alias of one of those. A `-latest` suffix is never dropped: it is a name only where the
   * catalog lists it (`gpt-4o-latest` is no model). A more specific name always wins: a dated id
   * with its own price is not read as the undated one.
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
    const untagged = this.#untagged(provider, modelId);
    if (untagged !== modelId) candidates.push(untagged);
    const undated = this.#unpinned(provider, untagged);
    if (undated !== untagged) candidates.push(undated, `${undated}-latest`);
    for (const c of candidates) if (known(c)) return c;
    for (const c of candidates) {
      const a = alias(c);
      if (a !== undefined) return a;
    }
    return undefined;
  }

  /** `name` without Ollama's `:latest` tag, on a provider whose names take it. */
  #untagged(provider: string, name: string): string {
    return this.#tagged.has(provider) ? name.replace(TAG, '') : name;
  }

  /** `name` without its snapshot suffix: a date (every provider), a `-NNN` version (Gemini). */
  #unpinned(provider: string, name: string): string {
    const undated = name.replace(DATED, '');
    if (undated !== name) return undated;
    return VERSIONED_PROVIDERS.has(provider) ? name.replace(VERSIONED, '') : name;
  }

  /** `name` is one the catalog lists on `provider` as it is: a model id, an alias, or a dated price's model. */
  knows(provider: string, name: string): boolean {
    const k = keyOf(provider, name);
    return this.#models.has(k) || this.#aliases.has(k) || this.#history.has(k);
  }

  /**
   * `name` pins a snapshot the catalog does not list (a date, or Gemini's `-NNN` version, on a name
   * that is not itself a catalog id or alias): only a pool serving exactly that snapshot answers it,
   * never the undated model (`canonicalId` still prices it, for a pool that serves it). The routing
   * guard: `gemini-2.5-flash-999` and a retired `gpt-4o-mini-2024-07-18` are the providers' 404.
   */
  pinsSnapshot(provider: string, name: string): boolean {
    if (this.knows(provider, name)) return false;
    const untagged = this.#untagged(provider, name);
    return !this.knows(provider, untagged) && this.#unpinned(provider, untagged) !== untagged;
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
