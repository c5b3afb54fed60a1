import type { TestProject } from 'vitest/node';

/**
 * Starts Redis and Postgres once for the whole run with testcontainers, unless REDIS_URL /
 * DATABASE_URL already point at running servers. Images come from REDIS_IMAGE / POSTGRES_IMAGE.
 */
export default async function setup(project: TestProject) {
  const stops: Array<() => Promise<unknown>> = [];
  let redisUrl = process.env.REDIS_URL;
  let databaseUrl = process.env.DATABASE_URL;
  if (!redisUrl) {
    const { RedisContainer } = await import('@testcontainers/redis');
    const c = await new RedisContainer(process.env.REDIS_IMAGE ?? 'redis:7')
      .withCommand(['redis-server', '--maxmemory-policy', 'noeviction'])
      .start();
    redisUrl = `redis://${c.getHost()}:${c.getMappedPort(6379)}`;
    stops.push(() => c.stop());
    console.log(`[test] redis container at ${redisUrl}`);
  }
  if (!databaseUrl) {
    const { PostgreSqlContainer } = await import('@testcontainers/postgresql');
    const c = await new PostgreSqlContainer(process.env.POSTGRES_IMAGE ?? 'postgres:15')
      .withUsername('postgres')
      .withPassword('postgres')
      .withDatabase('postgres')
      .start();
    databaseUrl = c.getConnectionUri();
    stops.push(() => c.stop());
    console.log(`[test] postgres container at ${databaseUrl}`);
  }
  project.provide('redisUrl', redisUrl);
  project.provide('databaseUrl', databaseUrl);
  return async () => {
    for (const stop of stops) await stop();
  };
}

declare module 'vitest' {
  export interface ProvidedContext {
    redisUrl: string;
    databaseUrl: string;
  }
}
