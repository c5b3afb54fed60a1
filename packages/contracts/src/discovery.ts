import { z } from 'zod';

/** What each worker pool publishes about its provider (Redis, refreshed periodically, with a TTL). */
export const DiscoveredModelRecord = z.object({
  id: z.string(),
  displayName: z.string().optional(),
  created: z.number().optional(),
  contextWindow: z.number().optional(),
  maxOutputTokens: z.number().optional(),
  ownedBy: z.string().optional(),
});
export type DiscoveredModelRecord = z.infer<typeof DiscoveredModelRecord>;

export const DiscoveryRecord = z.object({
  v: z.literal(1),
  provider: z.string(),
  kind: z.string(),
  /** Chat parameters the pool's host refuses beyond its protocol's (its preset's); the ingress refuses them. */
  unsupported: z.array(z.string()).max(64).optional(),
  /** The pool talks to the project's fake provider (demo / tests). */
  fake: z.boolean(),
  /** `provider`: listed by the provider's API; `catalog`: listing failed, the built-in catalog stands in. */
  source: z.enum(['provider', 'catalog']),
  at: z.number(),
  models: z.array(DiscoveredModelRecord),
});
export type DiscoveryRecord = z.infer<typeof DiscoveryRecord>;
