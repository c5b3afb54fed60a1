import { z } from 'zod';

/**
 * Validates a service's environment once, at start, with its zod schema; a bad value stops the
 * service with every problem named (no half-configured process).
 */
export function parseEnv<S extends z.ZodType>(
  schema: S,
  env: Record<string, string | undefined>,
  service: string,
): z.infer<S> {
  const r = schema.safeParse(env);
  if (!r.success) {
    const problems = r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
    throw new Error(`invalid ${service} configuration: ${problems}`);
  }
  return r.data;
}

/** A boolean environment variable: true/false, 1/0, yes/no. */
export const envBool = (def: boolean) =>
  z
    .enum(['true', 'false', '1', '0', 'yes', 'no'])
    .default(def ? 'true' : 'false')
    .transform((v) => v === 'true' || v === '1' || v === 'yes');

/**
 * `REDIS_CLUSTER_NODES`: seed nodes of a Redis Cluster, `host:port,host:port`. Unset or empty: one
 * Redis server at REDIS_URL (which, with a cluster, gives only credentials and TLS).
 */
export const envRedisClusterNodes = () =>
  z
    .string()
    .regex(/^\s*([^\s,:]+:\d{1,5}\s*(,\s*[^\s,:]+:\d{1,5}\s*)*)?$/, 'expected host:port[,host:port…]')
    .optional()
    .transform((v) => (v?.trim() ? v.trim() : undefined));
