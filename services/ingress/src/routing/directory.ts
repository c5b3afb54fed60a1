import { getEach, type RedisClient } from '@faregate/queue/redis';
import type { CatalogModel, ModelPrice } from '@faregate/catalog/models';
import { BUILTIN_MODELS } from '@faregate/catalog/models';
import { PriceTable } from '@faregate/catalog/prices';
import { DiscoveryRecord } from '@faregate/contracts/discovery';
import type { Keys } from '@faregate/queue/keys';

/** A model a live pool serves, with what routing and admission need to know. */
export interface ModelEntry {
  provider: string;
  id: string;
  contextWindow: number;
  maxOutputTokens: number;
  /** `maxOutputTokens` is the model's (discovered or in the catalog), not a default guessed for it. */
  outputLimitKnown: boolean;
  /** The catalog lists the model: its capabilities are known, not a default. */
  catalogued: boolean;
  capabilities: string[];
  price: ModelPrice | undefined;
  /** Served by a self-hosted pool (free unless the routing file prices it). */
  selfHosted: boolean;
  created: number;
  ownedBy: string;
  fake: boolean;
  /** The pool's wire protocol (`openai`, `anthropic`, `gemini`, `openai-compatible`): what it can do. */
  kind: string;
  /** Chat parameters the pool's host refuses beyond its protocol's (its preset's). */
  unsupported: readonly string[];
  /** An embedding model's vector size (the catalog's), when known. */
  dimensions?: { max: number; settable: boolean } | undefined;
}

const DATED = /-(\d{8}|\d{4}-\d{2}-\d{2})$/;

interface ProviderModels {
  /** Served id → entry. */
  served: Map<string, ModelEntry>;
  /** Other names of a served model: its catalog id (dated, `:latest`, `-latest` forms) and undated id. */
  named: Map<string, ModelEntry>;
}

/**
 * The union of what the live worker pools report (model discovery), merged with the catalog for
 * prices, context windows and capabilities. Names and prices resolve through the catalog's one
 * `PriceTable` (the same resolution billing settles with). Refreshed in the background. Every table
 * here is a `Map`: model names come from callers.
 */
export class ModelDirectory {
  readonly #redis: RedisClient;
  readonly #keys: Keys;
  readonly #table: PriceTable;
  #entries: ModelEntry[] = [];
  #byProvider = new Map<string, ProviderModels>();
  /** Pools that were live at some point since this process started. */
  readonly #seen = new Set<string>();
  /** Pools in the set of pools whose record (their liveness) lapsed: every worker gone or frozen. */
  #lost: string[] = [];
  #timer: NodeJS.Timeout | undefined;

  constructor(
    redis: RedisClient,
    keys: Keys,
    catalog: readonly CatalogModel[] | PriceTable = BUILTIN_MODELS,
  ) {
    this.#redis = redis;
    this.#keys = keys;
    this.#table = catalog instanceof PriceTable ? catalog : new PriceTable(catalog);
  }

  get prices(): PriceTable {
    return this.#table;
  }

  async refresh(): Promise<void> {
    const providers = await this.#redis.smembers(this.#keys.pools);
    if (providers.length === 0) {
      this.#lost = [];
      this.#set([]);
      return;
    }
    // One MGET (one GET per pool on a Redis Cluster: each pool's record is in a slot of its own).
    const raws = await getEach(
      this.#redis,
      providers.map((p) => this.#keys.models(p)),
    );
    const entries: ModelEntry[] = [];
    this.#lost = providers.filter((_, i) => !raws[i]);
    for (const raw of raws) {
      if (!raw) continue;
      const parsed = DiscoveryRecord.safeParse(JSON.parse(raw));
      if (!parsed.success) continue;
      const rec = parsed.data;
      for (const m of rec.models) {
        const cat = this.#table.model(rec.provider, m.id);
        const priced = this.#table.resolvePrice(rec.provider, m.id);
        entries.push({
          provider: rec.provider,
          id: m.id,
          contextWindow: m.contextWindow ?? cat?.contextWindow ?? 8192,
          maxOutputTokens: m.maxOutputTokens ?? cat?.maxOutputTokens ?? 4096,
          // A model known by its routing-file price alone has placeholder limits and capabilities.
          outputLimitKnown: m.maxOutputTokens !== undefined || (cat !== undefined && !cat.pricedOnly),
          catalogued: cat !== undefined && !cat.pricedOnly,
          capabilities: cat?.capabilities ?? ['streaming'],
          price: priced?.price,
          selfHosted: priced?.selfHosted ?? false,
          created: m.created ?? 1_700_000_000,
          ownedBy: m.ownedBy ?? rec.provider,
          fake: rec.fake,
          kind: rec.kind,
          unsupported: rec.unsupported ?? [],
          dimensions: cat?.dimensions,
        });
      }
    }
    this.#set(entries);
  }

  start(intervalMs = 5000): void {
    this.#timer = setInterval(() => void this.refresh().catch(() => {}), intervalMs);
    this.#timer.unref();
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
  }

  #set(entries: ModelEntry[]): void {
    this.#entries = entries;
    const by = new Map<string, ProviderModels>();
    for (const e of entries) {
      let p = by.get(e.provider);
      if (!p) {
        p = { served: new Map(), named: new Map() };
        by.set(e.provider, p);
      }
      p.served.set(e.id, e);
    }
    for (const [provider, p] of by) {
      // Newest snapshot last, so it wins a name several served ids share.
      for (const id of [...p.served.keys()].sort()) {
        const e = p.served.get(id)!;
        for (const name of [this.#table.canonicalId(provider, id), id.replace(DATED, '')]) {
          if (name !== undefined && name !== id && !p.served.has(name)) p.named.set(name, e);
        }
      }
    }
    this.#byProvider = by;
    for (const p of by.keys()) this.#seen.add(p);
  }

  /** The pool has published its models (a worker of it is alive). */
  isLive(provider: string): boolean {
    return this.#byProvider.has(provider);
  }

  /**
   * Pools that ran and have no live worker now (their record lapsed: gone, or frozen), as of the
   * last refresh. Their queued jobs can go on to their routes' next hops (lost-pools.ts).
   */
  lostPools(): readonly string[] {
    return this.#lost;
  }

  /** The pool was live at some point since this process started. */
  wasLive(provider: string): boolean {
    return this.#seen.has(provider);
  }

  /** Catalog data for a provider's model id (dated, `:latest`, alias: see `PriceTable.canonicalId`). */
  catalogEntry(provider: string, id: string): CatalogModel | undefined {
    return this.#table.model(provider, id);
  }

  get entries(): readonly ModelEntry[] {
    return this.#entries;
  }

  get providers(): string[] {
    return [...this.#byProvider.keys()];
  }

  /** The entry for `id` on `provider` (alias, undated and untagged names resolve to a served model). */
  find(provider: string, id: string): ModelEntry | undefined {
    const p = this.#byProvider.get(provider);
    if (!p) return undefined;
    const direct =
      p.served.get(id) ??
      // Ollama: an untagged name means `:latest`.
      (id.includes(':') ? undefined : p.served.get(`${id}:latest`));
    if (direct) return direct;
    // A snapshot name (dated, Gemini's `-NNN`) neither served nor listed in the catalog (one that
    // never existed, or was retired) is not its undated model: the caller pinned that snapshot, and
    // no other one is it. Providers answer 404 for it, and so does the gateway. Which names resolve
    // at all (no `-latest` the provider does not define, `:latest` only on Ollama's pools) is the
    // catalog's to say: `PriceTable.canonicalId`.
    if (this.#table.pinsSnapshot(provider, id)) return p.named.get(id);
    const canonical = this.#table.canonicalId(provider, id);
    return (
      (canonical === undefined ? undefined : (p.served.get(canonical) ?? p.named.get(canonical))) ??
      p.named.get(id)
    );
  }

  /**
   * The other names each served model answers to on its provider (its undated id, its catalog id,
   * `-latest` forms): `provider/name` routes to `entry`.
   */
  *names(): Iterable<{ provider: string; name: string; entry: ModelEntry }> {
    for (const [provider, p] of this.#byProvider)
      for (const [name, entry] of p.named)
        if (this.find(provider, name) === entry) yield { provider, name, entry };
  }

  /** Every live provider that serves a bare model name. */
  findAll(id: string): ModelEntry[] {
    const out: ModelEntry[] = [];
    for (const p of this.#byProvider.keys()) {
      const e = this.find(p, id);
      if (e) out.push(e);
    }
    return out;
  }
}
