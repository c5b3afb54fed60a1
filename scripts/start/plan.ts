// Tooling, not a service: it reads the providers' own env rules so `pnpm start` runs exactly the
// pools the workers will accept (scripts/ is no workspace package, hence the relative import).
import { providersFromEnv } from '../../packages/providers/src/registry.ts';

type Env = Record<string, string | undefined>;

/** The providers every deployment has a pool for; a missing key means the fake serves it. */
const BUILTIN_POOLS = ['openai', 'anthropic', 'gemini'] as const;

export interface Plan {
  /** Start the fake provider (some built-in provider has no key and FAKE_PROVIDER_URL is unset). */
  startFake: boolean;
  /** Pools the fake provider serves (they have no key of their own). */
  fakePools: string[];
  /** Pools to run, in a stable order, with their process counts (0 excluded). */
  pools: Array<{ id: string; processes: number }>;
}

/**
 * Decides what to run. `fakeUrl` is where our own fake will listen when we start it.
 * FAKE_PROVIDER_URL set: an external fake (or, when empty, none at all) is used instead.
 */
export function planServices(env: Env, counts: ReadonlyMap<string, number>, fakeUrl: string): Plan {
  const configured = new Set(providersFromEnv({ ...env, FAKE_PROVIDER_URL: '' }).map((p) => p.id));
  const startFake = env.FAKE_PROVIDER_URL === undefined && BUILTIN_POOLS.some((id) => !configured.has(id));
  const providers = providersFromEnv(startFake ? { ...env, FAKE_PROVIDER_URL: fakeUrl } : env);
  const ids = providers.map((p) => p.id);
  const unknown = [...counts.keys()].filter((id) => !ids.includes(id));
  if (unknown.length > 0) {
    throw new Error(
      `--workers names pools that are not configured: ${unknown.join(', ')} (configured: ${ids.join(', ') || 'none'})`,
    );
  }
  const pools = ids.map((id) => ({ id, processes: counts.get(id) ?? 1 })).filter((p) => p.processes > 0);
  const fakePools = providers.filter((p) => p.fake && pools.some((q) => q.id === p.id)).map((p) => p.id);
  return { startFake: startFake && fakePools.length > 0, fakePools, pools };
}
