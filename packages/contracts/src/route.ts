import { z } from 'zod';

/**
 * One provider call of a request, as the caller is told about it: which provider and model, and how
 * it ended (`code` `ok`, or the error code; `status` the provider's HTTP status when it answered with
 * one). The steps of a request, in order, are its route: retries and fallback hops included.
 */
export const RouteStep = z.object({
  provider: z.string(),
  model: z.string(),
  status: z.number().int().nullable(),
  code: z.string(),
});
export type RouteStep = z.infer<typeof RouteStep>;

/**
 * The codes of a candidate skipped without a call, as its step in the route carries them: its
 * provider's circuit was open; its pool was paused (a 429) past the request's patience; its pool was
 * lost (no live worker) with the job queued for it, which went on to the next hop.
 */
export const ROUTE_SKIPS = {
  CIRCUIT_OPEN: 'circuit_open',
  POOL_PAUSED: 'paused',
  POOL_LOST: 'pool_lost',
} as const;
export type RouteSkip = (typeof ROUTE_SKIPS)[keyof typeof ROUTE_SKIPS];
const SKIP_CODES: ReadonlySet<string> = new Set(Object.values(ROUTE_SKIPS));
export const isSkip = (code: string): code is RouteSkip => SKIP_CODES.has(code);

/**
 * The code of a call cut short because the process making it stopped (killed, or frozen past its
 * lease): the request's next run names it in the route when it bills that call.
 */
export const INTERRUPTED = 'interrupted';

/** The response headers that say what served an answer (every answer of the chat doors). */
export const SERVED_HEADERS = {
  provider: 'x-faregate-provider',
  model: 'x-faregate-model',
  /** The calls made, in order: `gemini:503,openai:ok` (provider, then the status, `ok`, or a code). */
  attempts: 'x-faregate-attempts',
} as const;

/** `gemini:503,openai:ok`: each step's provider and its HTTP status (or `ok`, or its error code). */
export function routeHeader(steps: readonly RouteStep[]): string {
  return steps.map((s) => `${s.provider}:${s.code === 'ok' ? 'ok' : (s.status ?? s.code)}`).join(',');
}

/** A step, as an error message names it: `gemini/gemini-2.5-flash: 503 provider_unavailable`. */
export function describeStep(s: RouteStep): string {
  return `${s.provider}/${s.model}: ${s.status === null ? '' : `${s.status} `}${s.code}`;
}

/**
 * The headers for an answer: the provider and model of the last step that answered (or was tried
 * last), and the route. Empty when no provider was called.
 */
export function servedHeaders(steps: readonly RouteStep[]): Record<string, string> {
  const last = steps.at(-1);
  if (!last) return {};
  return {
    [SERVED_HEADERS.provider]: last.provider,
    [SERVED_HEADERS.model]: `${last.provider}/${last.model}`,
    [SERVED_HEADERS.attempts]: routeHeader(steps),
  };
}
