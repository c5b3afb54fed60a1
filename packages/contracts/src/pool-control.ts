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

/**
 * Limits a pool learned from its provider's rate-limit headers (`x-ratelimit-limit-*`,
 * `anthropic-ratelimit-*`), shared by the pool's processes in one hash: `rpm:<i>` / `tpm:<i>` per
 * provider key index (keys of one pool may be on different tiers), and `hotUntil`, the epoch ms
 * until which they are enforced (the provider reported a window at least half spent). Configured
 * limits (routing file, environment, overrides) take precedence over them.
 */
export interface LearnedLimits {
  rpm?: number;
  tpm?: number;
  /** Epoch ms until which the learned limits are enforced (absent: not yet). */
  hotUntil?: number;
}

const LearnedField = z.string().regex(/^(rpm|tpm):\d{1,4}$/);
const PositiveInt = z.coerce.number().int().positive().max(Number.MAX_SAFE_INTEGER);

/** Reads a learned-limits hash: the smallest limit over the provider keys; bad fields are ignored. */
export function parseLearnedLimits(hash: Record<string, string>): LearnedLimits {
  const out: LearnedLimits = {};
  for (const [field, raw] of Object.entries(hash)) {
    const v = PositiveInt.safeParse(raw);
    if (!v.success) continue;
    if (field === 'hotUntil') out.hotUntil = v.data;
    else if (LearnedField.safeParse(field).success) {
      const k = field.startsWith('rpm') ? 'rpm' : 'tpm';
      out[k] = Math.min(out[k] ?? Number.POSITIVE_INFINITY, v.data);
    }
  }
  return out;
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
