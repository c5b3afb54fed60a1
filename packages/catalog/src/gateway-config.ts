import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { BUILTIN_MODELS, type CatalogModel, ModelPrice } from './models.ts';
import { PriceTable } from './prices.ts';

/**
 * The gateway's routing configuration: one validated JSON file (`FAREGATE_CONFIG`), with
 * `${ENV}` / `${ENV:-default}` interpolation so secrets stay in the environment.
 */
/** A limit: a positive whole number, or unset (absent, or `""` from an unset `${ENV:-}`). */
const limit = () =>
  z.preprocess(
    (v) => (v === '' || v === null ? undefined : v),
    z.coerce.number().int().positive().optional(),
  );

const Limits = z.object({
  /** Requests per minute across every process of the pool (per provider key). */
  rpm: limit(),
  /** Input + output tokens per minute (per provider key). */
  tpm: limit(),
  /** Requests in flight across every process of the pool. */
  maxInFlight: limit(),
  /** Attempts on this provider before falling back. */
  attempts: z.coerce.number().int().min(1).max(10).optional(),
});

const Circuit = z.object({
  /** Failure ratio over the window that opens the circuit. */
  failureRatio: z.number().min(0).max(1).default(0.5),
  minSamples: z.number().int().positive().default(10),
  windowMs: z.number().int().positive().default(30_000),
  /** How long the circuit stays open before one probe is let through. */
  openMs: z.number().int().positive().default(15_000),
});

/**
 * The parsed tables are looked up with names callers send (`aliases[req.model]`): they have no
 * prototype, so `constructor` or `__proto__` finds nothing instead of an inherited property.
 */
const table = <T extends z.ZodType>(value: T) =>
  z
    .record(z.string(), value)
    .default({})
    .transform((r) => Object.assign(Object.create(null) as Record<string, z.infer<T>>, r));

export const GatewayConfig = z.object({
  /** `provider/model` → further candidates, tried in order when it cannot serve. */
  fallbacks: table(z.array(z.string())),
  /** Extra model names → `provider/model` or a bare model name. */
  aliases: table(z.string()),
  /** `provider/model` → price overrides (USD per 1M tokens). */
  prices: table(ModelPrice),
  providers: table(z.object({ limits: Limits.default({}), circuit: Circuit.optional() })),
});
export type GatewayConfig = z.infer<typeof GatewayConfig>;
export type ProviderLimits = z.infer<typeof Limits>;
export type CircuitConfig = z.infer<typeof Circuit>;
export const defaultCircuit = (): CircuitConfig => Circuit.parse({});

export function interpolate(text: string, env: Record<string, string | undefined>): string {
  return text.replace(/\$\{([A-Z0-9_]+)(?::-([^}]*))?\}/g, (_m, name: string, def: string | undefined) => {
    const v = env[name];
    if (v !== undefined && v !== '') return v;
    if (def !== undefined) return def;
    throw new Error(`configuration references \${${name}}, which is not set`);
  });
}

export function parseGatewayConfig(text: string, env: Record<string, string | undefined>): GatewayConfig {
  const r = GatewayConfig.safeParse(JSON.parse(interpolate(text, env)));
  if (!r.success) {
    throw new Error(
      `invalid gateway config: ${r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`,
    );
  }
  return r.data;
}

/** Reads the file named by `path` (no file: the empty configuration). */
export function loadGatewayConfig(
  path: string | undefined,
  env: Record<string, string | undefined>,
): GatewayConfig {
  if (!path) return GatewayConfig.parse({});
  return parseGatewayConfig(readFileSync(path, 'utf8'), env);
}

/**
 * The built-in catalog with the configured price overrides applied, so admission (ingress) and
 * settlement (billing) use the same prices. An override names a catalog id or one of its aliases;
 * any other `provider/model` (a dated snapshot priced on its own, a model the catalog lacks) adds an
 * entry, which wins over the undated id for that exact name.
 */
export function catalogWithOverrides(models: CatalogModel[], config: GatewayConfig): CatalogModel[] {
  const out = models.map((m) => ({ ...m }));
  const known = new PriceTable(models);
  for (const [name, price] of Object.entries(config.prices)) {
    const slash = name.indexOf('/');
    if (slash <= 0) throw new Error(`price override "${name}": use provider/model`);
    const provider = name.slice(0, slash);
    const id = name.slice(slash + 1);
    const existing =
      out.find((m) => m.provider === provider && m.id === id) ??
      out.find((m) => m.provider === provider && m.aliases.includes(id));
    if (existing) {
      existing.price = price;
      continue;
    }
    // A dated snapshot of a catalog model is that model, priced on its own: its window, limits and
    // capabilities are the model's. Any other name is known by its price alone.
    const baseId = known.canonicalId(provider, id);
    const base = models.find((m) => m.provider === provider && m.id === baseId);
    out.push(
      base
        ? { ...base, id, aliases: [], price }
        : {
            provider,
            id,
            aliases: [],
            contextWindow: 8192,
            maxOutputTokens: 4096,
            capabilities: ['streaming'],
            price,
            pricedOnly: true,
          },
    );
  }
  return out;
}

/** The price table of a deployment: the built-in catalog with the routing file's overrides. */
export function priceTable(config: GatewayConfig, models: CatalogModel[] = BUILTIN_MODELS): PriceTable {
  return new PriceTable(catalogWithOverrides(models, config));
}
