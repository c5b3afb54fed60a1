import type { Db } from '@faregate/db/client';
import { loadPrices } from '@faregate/db/prices';
import { type MicroPrice, toMicroPrice } from './cost.ts';

interface Dated {
  from: number;
  price: MicroPrice;
}

/**
 * In-memory copy of the `prices` table (small: one row per model and price change), so pricing a
 * batch costs no queries. Refreshed periodically, and at most every `missReloadMs` when an event
 * names a model we have no price for (an override added while we run).
 */
export class PriceBook {
  #db: Db;
  #byModel = new Map<string, Dated[]>();
  #lastLoad = 0;
  #missReloadMs: number;

  constructor(db: Db, opts: { missReloadMs?: number } = {}) {
    this.#db = db;
    this.#missReloadMs = opts.missReloadMs ?? 5_000;
  }

  async load(): Promise<void> {
    const rows = await loadPrices(this.#db);
    const next = new Map<string, Dated[]>();
    for (const r of rows) {
      const k = `${r.provider}\u0000${r.model}`;
      const list = next.get(k) ?? [];
      list.push({ from: r.effectiveAt.getTime(), price: toMicroPrice(r) });
      next.set(k, list);
    }
    this.#byModel = next;
    this.#lastLoad = Date.now();
  }

  /** Reloads when a lookup missed and the last load is older than `missReloadMs`. */
  async refreshIfMissing(keys: Array<{ provider: string; model: string }>): Promise<void> {
    if (Date.now() - this.#lastLoad < this.#missReloadMs) return;
    if (keys.some((k) => !this.#byModel.has(`${k.provider}\u0000${k.model}`))) await this.load();
  }

  /**
   * The price in force at `atMs`: the latest row effective at or before it. An event older than
   * every known price uses the earliest one (the catalog date is when prices were taken, not when
   * they started), rather than going unpriced.
   */
  lookup(provider: string, model: string, atMs: number): MicroPrice | undefined {
    const list = this.#byModel.get(`${provider}\u0000${model}`);
    if (!list || list.length === 0) return undefined;
    let found = list[0]!;
    for (const d of list) {
      if (d.from <= atMs) found = d;
      else break;
    }
    return found.price;
  }
}
