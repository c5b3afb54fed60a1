import { Cluster, type ClusterOptions, Redis, type RedisOptions } from 'ioredis';

/**
 * A connection to the gateway's Redis: one server (`REDIS_URL`), or a Redis Cluster
 * (`REDIS_CLUSTER_NODES`). Every key the gateway writes is Cluster-safe (keys.ts): the keys one
 * script, MULTI or pipeline touches share a hash tag. What reads or writes keys of several slots at
 * once goes through `getEach` / `sendEach`, which are one command (or one pipeline) on a single
 * server, as before, and one command per key on a Cluster.
 */
export type RedisClient = Redis | Cluster;

/** Where Redis is, as each service's config has it. */
export interface RedisTarget {
  REDIS_URL: string;
  /**
   * Seed nodes of a Redis Cluster, `host:port,host:port` (a few are enough: the client discovers
   * the others and follows failovers). When set, REDIS_URL supplies only the username, password
   * and TLS (`rediss://`); its host is not used.
   */
  REDIS_CLUSTER_NODES?: string | undefined;
}

/** `REDIS_CLUSTER_NODES`' format (checked by each service's config). */
export const CLUSTER_NODES_PATTERN = /^\s*[^\s,:]+:\d{1,5}\s*(,\s*[^\s,:]+:\d{1,5}\s*)*$/;

export function parseClusterNodes(value: string): { host: string; port: number }[] {
  if (!CLUSTER_NODES_PATTERN.test(value))
    throw new Error(`REDIS_CLUSTER_NODES must be host:port[,host:port…], got "${value}"`);
  return value.split(',').map((n) => {
    const [host = '', port = ''] = n.trim().split(':');
    return { host, port: Number(port) };
  });
}

type ConnectionOptions = { blocking?: boolean; name?: string } & RedisOptions;

/**
 * One place that creates Redis connections. `blocking` connections (BullMQ workers, subscribers)
 * must not give up on commands while Redis reconnects (`maxRetriesPerRequest: null`); request-path
 * connections fail fast instead so a caller gets an error rather than hanging.
 *
 * A URL (tests, tools) is always one server; a service passes its config, which selects a Cluster
 * client when `REDIS_CLUSTER_NODES` is set.
 */
export function createRedis(url: string, opts?: ConnectionOptions): Redis;
export function createRedis(target: RedisTarget, opts?: ConnectionOptions): RedisClient;
export function createRedis(target: string | RedisTarget, opts: ConnectionOptions = {}): RedisClient {
  const { blocking, name, ...rest } = opts;
  const base: RedisOptions = {
    maxRetriesPerRequest: blocking ? null : 3,
    enableReadyCheck: true,
    connectionName: name,
    lazyConnect: false,
    ...rest,
  };
  if (typeof target === 'string') return new Redis(target, base);
  if (!target.REDIS_CLUSTER_NODES) return new Redis(target.REDIS_URL, base);
  return createCluster(target.REDIS_URL, parseClusterNodes(target.REDIS_CLUSTER_NODES), base);
}

function createCluster(url: string, nodes: { host: string; port: number }[], base: RedisOptions): Cluster {
  const u = new URL(url);
  const tls = u.protocol === 'rediss:';
  const { lazyConnect, enableReadyCheck, ...perNode } = base;
  const options: ClusterOptions = {
    lazyConnect,
    enableReadyCheck,
    redisOptions: {
      ...perNode,
      ...(u.username ? { username: decodeURIComponent(u.username) } : {}),
      ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
      ...(tls ? { tls: {} } : {}),
    },
    // A failover or a resharding moves slots: commands wait for the new owner (MOVED, TRYAGAIN,
    // CLUSTERDOWN are retried after these delays) instead of failing.
    retryDelayOnFailover: 200,
    retryDelayOnClusterDown: 300,
    retryDelayOnTryAgain: 100,
    slotsRefreshTimeout: 2_000,
    // Certificates of managed clusters name the host the client was given, not the IP it resolves to.
    ...(tls ? { dnsLookup: (address, callback) => callback(null, address) } : {}),
  };
  return new Cluster(nodes, options);
}

/** Another connection like `redis` (same server or cluster, same options). */
export function duplicate(redis: RedisClient): RedisClient {
  return redis instanceof Cluster ? redis.duplicate() : redis.duplicate();
}

/**
 * GET of each key (in order): one MGET on a single server; on a Cluster, where the keys may be in
 * different slots, one GET each, sent at once.
 */
export async function getEach(redis: RedisClient, keys: readonly string[]): Promise<(string | null)[]> {
  if (keys.length === 0) return [];
  if (!redis.isCluster) return redis.mget(...keys);
  return Promise.all(keys.map((k) => redis.get(k)));
}

/** A command as ioredis' `call` takes it: name, then arguments (the key first for every use here). */
export type Command = readonly [name: string, ...args: (string | number)[]];

/**
 * Sends commands on keys that need not share a slot, not atomically, and returns their replies in
 * order (the first error is thrown): one pipeline (one round trip) on a single server; on a Cluster,
 * each command on its own, all at once (each goes to its slot's node).
 */
export async function sendEach(redis: RedisClient, commands: readonly Command[]): Promise<unknown[]> {
  if (commands.length === 0) return [];
  if (redis.isCluster) return Promise.all(commands.map(([c, ...args]) => redis.call(c, ...args)));
  const res = await redis.pipeline(commands.map((c) => [...c])).exec();
  if (!res) throw new Error('pipeline aborted');
  return res.map(([err, v]) => {
    if (err) throw err;
    return v;
  });
}
