import type { CatalogModel } from '@faregate/catalog/models';
import { sql } from 'drizzle-orm';
import type { Db } from './client.ts';
import { prices } from './schema/prices.ts';

/**
 * Upserts the catalog's prices effective at `takenAt` (ISO date/time). Called by the ingress and
 * billing at start, with config overrides already merged into `models`. A model without a price is
 * skipped (it stays unpriced). Re-running with the same date overwrites that date's row, so a
 * corrected override takes effect; a later date adds a new price without rewriting history.
 */
export async function syncPrices(db: Db, models: CatalogModel[], takenAt: string): Promise<number> {
  const effectiveAt = new Date(takenAt);
  if (Number.isNaN(effectiveAt.getTime())) throw new RangeError(`invalid takenAt: ${takenAt}`);
  const rows = models.flatMap((m) =>
    m.price
      ? [
          {
            provider: m.provider,
            model: m.id,
            effectiveAt,
            inputPerM: m.price.inputPerM,
            cachedInputPerM: m.price.cachedInputPerM ?? null,
            cacheWritePerM: m.price.cacheWritePerM ?? null,
            cacheWrite1hPerM: m.price.cacheWrite1hPerM ?? null,
            outputPerM: m.price.outputPerM,
          },
        ]
      : [],
  );
  // One row per key: a later duplicate in `models` (an override) wins.
  const unique = [...new Map(rows.map((r) => [`${r.provider}\u0000${r.model}`, r])).values()];
  if (unique.length === 0) return 0;
  await db
    .insert(prices)
    .values(unique)
    .onConflictDoUpdate({
      target: [prices.provider, prices.model, prices.effectiveAt],
      set: {
        inputPerM: sql`excluded.input_per_m`,
        cachedInputPerM: sql`excluded.cached_input_per_m`,
        cacheWritePerM: sql`excluded.cache_write_per_m`,
        cacheWrite1hPerM: sql`excluded.cache_write_1h_per_m`,
        outputPerM: sql`excluded.output_per_m`,
        updatedAt: sql`now()`,
      },
    });
  return unique.length;
}

export interface PriceRow {
  provider: string;
  model: string;
  effectiveAt: Date;
  inputPerM: string;
  cachedInputPerM: string | null;
  cacheWritePerM: string | null;
  cacheWrite1hPerM: string | null;
  outputPerM: string;
}

/** Every price row, oldest first per model (billing caches these in memory). */
export async function loadPrices(db: Db): Promise<PriceRow[]> {
  return db.select().from(prices).orderBy(prices.provider, prices.model, prices.effectiveAt);
}
