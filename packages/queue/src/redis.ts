import { Redis, type RedisOptions } from 'ioredis';

/**
 * One place that creates Redis connections. `blocking` connections (BullMQ workers, subscribers)
 * must not give up on commands while Redis reconnects (`maxRetriesPerRequest: null`); request-path
 * connections fail fast instead so a caller gets an error rather than hanging.
 */
export function createRedis(
  url: string,
  opts: { blocking?: boolean; name?: string } & RedisOptions = {},
): Redis {
  const { blocking, name, ...rest } = opts;
  return new Redis(url, {
    maxRetriesPerRequest: blocking ? null : 3,
    enableReadyCheck: true,
    connectionName: name,
    lazyConnect: false,
    ...rest,
  });
}
