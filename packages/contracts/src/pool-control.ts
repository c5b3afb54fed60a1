import { z } from 'zod';

/**
 * What the admin API and the worker pools share about a pool, in Redis: written by one process,
 * read by another, so each side parses it with these schemas (a bad record reads as "none").
 */

const Limit = z.number().int().positive().nullable().optional();

/**
 * Run-time limit overrides of a pool (`PUT /admin/v1/providers/:provider/limits`). A number overrides
 * the config file and environment; `null` removes that limit; absent leaves the configured one.
 */
export const LimitOverrides = z.strictObject({
  rpm: Limit,
  tpm: Limit,
  maxInFlight: Limit,
  attempts: z.number().int().min(1).max(10).nullable().optional(),
});
export type LimitOverrides = z.infer<typeof LimitOverrides>;

/** Parses a stored override record; anything unreadable is no override at all. */
export function parseLimitOverrides(raw: string | null): LimitOverrides {
  if (!raw) return {};
  try {
    const r = LimitOverrides.safeParse(JSON.parse(raw));
    return r.success ? r.data : {};
  } catch {
    return {};
  }
}

/** The circuit breaker's shared hash of a pool, as the workers' script writes it. */
export const CircuitRecord = z.object({
  state: z.enum(['closed', 'open', 'half']).catch('closed').default('closed'),
  /** Epoch ms until which an open circuit stays open (or a half-open probe is out). */
  until: z.coerce.number().optional().catch(undefined),
});
export type CircuitRecord = z.infer<typeof CircuitRecord>;

/** The state callers see: `half` is spelled `half-open`. */
export function circuitState(hash: Record<string, string>): 'closed' | 'open' | 'half-open' {
  const s = CircuitRecord.parse(hash).state;
  return s === 'half' ? 'half-open' : s;
}
