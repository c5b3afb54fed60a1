import type { Redis } from 'ioredis';
import type { CatalogModel, ModelPrice } from '@faregate/catalog/models';
import { BUILTIN_MODELS } from '@faregate/catalog/models';
import { DiscoveryRecord } from '@faregate/contracts/discovery';
import type { Keys } from '@faregate/queue/keys';

/** A model a live pool serves, with what routing and admission need to know. */
export interface ModelEntry {
  provider: string;
  id: string;
  contextWindow: number;
  maxOutputTokens: number;
  capabilities: string[];
  price: ModelPrice | undefined;
  created: number;
  ownedBy: string;
  fake: boolean;
}

/** Self-hosted OpenAI-compatible pools are free unless configured otherwise. */
const SELF_HOSTED = new Set(['llama']);
const DATED = /-(\d{8}|\d{4}-\d{2}-\d{2})$/;

/**
 * The union of what the live worker pools report (model discovery), merged with the built-in
 * catalog for prices, context windows and capabilities. Refreshed in the background.
 */
export class ModelDirectory {
  readonly #redis: Redis;
  readonly #keys: Keys;
  readonly #catalog: Map<string, CatalogModel>;
  readonly #aliases = new Map<string, string>();
  #entries: ModelEntry[] = [];
  #byProvider = new Map<string, Map<string, ModelEntry>>();
  #timer: NodeJS.Timeout | undefined;

  constructor(redis: Redis, keys: Keys, catalog: CatalogModel[] = BUILTIN_MODELS) {
    this.#redis = redis;
    this.#keys = keys;
    this.#catalog = new Map(catalog.map((m) => [`${m.provider}/${m.id}`, m]));
    for (const m of catalog) for (const a of m.aliases) this.#aliases.set(a, m.id);
  }

  async refresh(): Promise<void> {
    const providers = await this.#redis.smembers(this.#keys.k('pools'));
    if (providers.length === 0) {
      this.#set([]);
      return;
    }
    const raws = await this.#redis.mget(...providers.map((p) => this.#keys.models(p)));
    const entries: ModelEntry[] = [];
    for (const raw of raws) {
      if (!raw) continue;
      const parsed = DiscoveryRecord.safeParse(JSON.parse(raw));
      if (!parsed.success) continue;
      const rec = parsed.data;
      for (const m of rec.models) {
        const cat = this.catalogEntry(rec.provider, m.id);
        entries.push({
          provider: rec.provider,
          id: m.id,
          contextWindow: m.contextWindow ?? cat?.contextWindow ?? 8192,
          maxOutputTokens: m.maxOutputTokens ?? cat?.maxOutputTokens ?? 4096,
          capabilities: cat?.capabilities ?? ['streaming'],
          price:
            cat?.price ?? (SELF_HOSTED.has(rec.provider) ? { inputPerM: '0', outputPerM: '0' } : undefined),
          created: m.created ?? 1_700_000_000,
          ownedBy: m.ownedBy ?? rec.provider,
          fake: rec.fake,
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
    const by = new Map<string, Map<string, ModelEntry>>();
    for (const e of entries) {
      let m = by.get(e.provider);
      if (!m) {
        m = new Map();
        by.set(e.provider, m);
      }
      m.set(e.id, e);
    }
    this.#byProvider = by;
  }

  /** Catalog data for a provider's model id, matching dated variants (`claude-sonnet-4-5-20250929`). */
  catalogEntry(provider: string, id: string): CatalogModel | undefined {
    return (
      this.#catalog.get(`${provider}/${id}`) ??
      this.#catalog.get(`${provider}/${id.replace(DATED, '')}`) ??
      // Ollama: an untagged name means `:latest`.
      this.#catalog.get(`${provider}/${id.replace(/:latest$/, '')}`)
    );
  }

  get entries(): readonly ModelEntry[] {
    return this.#entries;
  }

  get providers(): string[] {
    return [...this.#byProvider.keys()];
  }

  /** The entry for `id` on `provider` (alias and undated names resolve to a served model). */
  find(provider: string, id: string): ModelEntry | undefined {
    const models = this.#byProvider.get(provider);
    if (!models) return undefined;
    const direct =
      models.get(id) ??
      models.get(this.#aliases.get(id) ?? '') ??
      (id.includes(':') ? undefined : models.get(`${id}:latest`));
    if (direct) return direct;
    // An undated or aliased name served under a dated id.
    const want = this.#aliases.get(id) ?? id;
    for (const e of models.values()) if (e.id.replace(DATED, '') === want) return e;
    return undefined;
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
