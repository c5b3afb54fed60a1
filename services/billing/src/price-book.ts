import { BUILTIN_MODELS, type CatalogModel } from '@faregate/catalog/models';
import { PriceTable, type ResolvedPrice } from '@faregate/catalog/prices';
import type { Db } from '@faregate/db/client';
import { loadPrices } from '@faregate/db/prices';
import type { MicroPrice } from './cost.ts';

/** Where a served call without a price is reported (the service's logger). */
export interface UnpricedLog {
  error(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export interface PriceBookOptions {
  /** A lookup that missed reloads the rows at most this often (an override added while we run). */
  missReloadMs?: number;
  /** Model names and aliases (the rows only carry prices): the built-in catalog. */
  models?: readonly CatalogModel[];
  log?: UnpricedLog;
  /**
   * The deployment serves unpriced models on purpose (ALLOW_UNPRICED_MODELS): such calls are a
   * warning. Otherwise the ingress refused them, so one reaching billing is an error.
   */
  allowUnpriced?: boolean;
}

/** One report per model per this long: loud, not a log flood. */
const REPORT_EVERY_MS = 60_000;

/**
 * Billing's cache of the `prices` table (small: one row per model and price change), so pricing a
 * batch costs no queries. Names resolve through the catalog's one `PriceTable.resolvePrice` (dated
 * ids, `:latest`, aliases, effective dates): the resolution admission holds with. Refreshed
 * periodically, and at most every `missReloadMs` when an event names a model we have no price for.
 */
export class PriceBook {
  #db: Db;
  #models: readonly CatalogModel[];
  #table: PriceTable;
  #lastLoad = 0;
  #missReloadMs: number;
  #log: UnpricedLog | undefined;
  #allowUnpriced: boolean;
  #reported = new Map<string, number>();

  constructor(db: Db, opts: PriceBookOptions = {}) {
    this.#db = db;
    this.#models = opts.models ?? BUILTIN_MODELS;
    this.#table = new PriceTable(this.#models);
    this.#missReloadMs = opts.missReloadMs ?? 5_000;
    this.#log = opts.log;
    this.#allowUnpriced = opts.allowUnpriced ?? false;
  }

  async load(): Promise<void> {
    const rows = await loadPrices(this.#db);
    const history = rows.map((r) => ({
      provider: r.provider,
      model: r.model,
      from: r.effectiveAt.getTime(),
      price: {
        inputPerM: r.inputPerM,
        outputPerM: r.outputPerM,
        ...(r.cachedInputPerM === null ? {} : { cachedInputPerM: r.cachedInputPerM }),
        ...(r.cacheWritePerM === null ? {} : { cacheWritePerM: r.cacheWritePerM }),
        ...(r.cacheWrite1hPerM === null ? {} : { cacheWrite1hPerM: r.cacheWrite1hPerM }),
      },
    }));
    this.#table = new PriceTable(this.#models, { history });
    this.#lastLoad = Date.now();
  }

  /** Reloads when a lookup missed and the last load is older than `missReloadMs`. */
  async refreshIfMissing(keys: Array<{ provider: string; model: string }>): Promise<void> {
    if (Date.now() - this.#lastLoad < this.#missReloadMs) return;
    if (keys.some((k) => !this.#table.resolvePrice(k.provider, k.model))) await this.load();
  }

  resolve(provider: string, model: string, atMs: number): ResolvedPrice | undefined {
    return this.#table.resolvePrice(provider, model, atMs);
  }

  /** The price in force at `atMs` for a served model id, in µUSD per M tokens (see `PriceTable.resolvePrice`). */
  lookup(provider: string, model: string, atMs: number): MicroPrice | undefined {
    return this.#table.microPrice(provider, model, atMs);
  }

  /**
   * A call that produced tokens has no price, so it settles at zero: never silent. An error unless
   * the deployment serves unpriced models on purpose; without a logger, a process warning.
   */
  reportUnpriced(e: { provider: string; model: string; requestId: string }): void {
    const key = `${e.provider}\u0000${e.model}`;
    const now = Date.now();
    if (now - (this.#reported.get(key) ?? -Infinity) < REPORT_EVERY_MS) return;
    this.#reported.set(key, now);
    const fields = { provider: e.provider, model: e.model, requestId: e.requestId };
    if (this.#allowUnpriced) {
      const msg = 'usage of a model without a price settled at zero (ALLOW_UNPRICED_MODELS)';
      if (this.#log) this.#log.warn(fields, msg);
      else process.emitWarning(`${msg}: ${e.provider}/${e.model}`, 'UnpricedUsage');
      return;
    }
    const msg =
      'usage of a model without a price settled at zero: the ingress should have refused it; price it in the routing file';
    if (this.#log) this.#log.error(fields, msg);
    else process.emitWarning(`${msg}: ${e.provider}/${e.model}`, 'UnpricedUsage');
  }
}
