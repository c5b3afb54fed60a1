import { Cluster, type ClusterOptions, Redis, type RedisOptions } from 'ioredis';
import { coalesceWrites } from './write-coalescing.ts';

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

type ConnectionOptions = {
  blocking?: boolean;
  /** Only for SUBSCRIBE (see `clusterSubscriber`). */
  subscriber?: boolean;
  name?: string;
} & RedisOptions;

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
  const { blocking, subscriber, name, ...rest } = opts;
  const base: RedisOptions = {
    maxRetriesPerRequest: blocking ? null : 3,
    enableReadyCheck: true,
    connectionName: name,
    lazyConnect: false,
    ...rest,
  };
  if (typeof target === 'string') return coalesceWrites(new Redis(target, base));
  if (!target.REDIS_CLUSTER_NODES) return coalesceWrites(new Redis(target.REDIS_URL, base));
  const nodes = parseClusterNodes(target.REDIS_CLUSTER_NODES);
  if (subscriber) return coalesceWrites(clusterSubscriber(target.REDIS_URL, nodes, base));
  const cluster = createCluster(target.REDIS_URL, nodes, base);
  // Each node's connection (the cluster opens and replaces them itself).
  cluster.on('+node', (node: Redis) => coalesceWrites(node));
  return cluster;
}

/** The username, password and TLS of REDIS_URL, which every node of a cluster shares. */
function credentials(url: string): RedisOptions {
  const u = new URL(url);
  return {
    ...(u.username ? { username: decodeURIComponent(u.username) } : {}),
    ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
    ...(u.protocol === 'rediss:' ? { tls: {} } : {}),
  };
}

/**
 * A subscriber connection on a cluster: a plain connection to one node (a cluster delivers every
 * PUBLISH on every node, replicas included) that moves to the next node of REDIS_CLUSTER_NODES
 * each time it reconnects, and subscribes again there. ioredis' Cluster subscribes through a
 * connection of its own that it replaces silently when its node fails; this one emits `ready`
 * after every reconnect, which is when followers re-read their jobs' streams from their cursors
 * (LiveHub): what was published while it was away is not lost.
 */
function clusterSubscriber(url: string, nodes: { host: string; port: number }[], base: RedisOptions): Redis {
  let at = Math.floor(Math.random() * nodes.length);
  const first = nodes[at] ?? { host: '127.0.0.1', port: 6379 };
  const redis: Redis = new Redis({
    ...base,
    ...credentials(url),
    host: first.host,
    port: first.port,
    retryStrategy: (times) => {
      at = (at + 1) % nodes.length;
      const next = nodes[at] ?? first;
      // The connector reads host and port from these options at every connect.
      redis.options.host = next.host;
      redis.options.port = next.port;
      return Math.min(times * 100, 2_000);
    },
  });
  return redis;
}

function createCluster(url: string, nodes: { host: string; port: number }[], base: RedisOptions): Cluster {
  const tls = new URL(url).protocol === 'rediss:';
  const { lazyConnect, enableReadyCheck, ...perNode } = base;
  const options: ClusterOptions = {
    lazyConnect,
    enableReadyCheck,
    redisOptions: { ...perNode, ...credentials(url) },
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
 * different slots, one pipeline per slot (`sendEach`).
 */
export async function getEach(redis: RedisClient, keys: readonly string[]): Promise<(string | null)[]> {
  if (keys.length === 0) return [];
  if (!redis.isCluster) return redis.mget(...keys);
  return (await sendEach(
    redis,
    keys.map((k) => ['get', k] as const),
  )) as (string | null)[];
}

/** A command as ioredis' `call` takes it: name, then its key, then the other arguments. */
export type Command = readonly [name: string, key: string, ...args: (string | number)[]];

/**
 * Sends commands on keys that need not share a slot, not atomically, and returns their replies in
 * order (the first error is thrown): one pipeline (one round trip) on a single server; on a Cluster,
 * one pipeline per hash slot (a pipeline's keys must live on one node), all sent at once.
 */
export async function sendEach(redis: RedisClient, commands: readonly Command[]): Promise<unknown[]> {
  if (commands.length === 0) return [];
  if (!redis.isCluster) return pipelined(redis, commands);
  const bySlot = new Map<number, number[]>();
  commands.forEach((c, i) => {
    const slot = hashSlot(c[1]);
    const group = bySlot.get(slot);
    if (group) group.push(i);
    else bySlot.set(slot, [i]);
  });
  const out: unknown[] = new Array(commands.length);
  await Promise.all(
    [...bySlot.values()].map(async (group) => {
      const replies = await pipelined(
        redis,
        group.map((i) => commands[i] as Command),
      );
      group.forEach((i, j) => {
        out[i] = replies[j];
      });
    }),
  );
  return out;
}

async function pipelined(redis: RedisClient, commands: readonly Command[]): Promise<unknown[]> {
  const res = await redis.pipeline(commands.map((c) => [...c])).exec();
  if (!res) throw new Error('pipeline aborted');
  return res.map(([err, v]) => {
    if (err) throw err;
    return v;
  });
}

/**
 * The Redis Cluster slot of a key: CRC16 (XMODEM) of its hash tag (the first non-empty `{…}`, else
 * the whole key), mod 16384.
 */
export function hashSlot(key: string): number {
  let k = key;
  const open = key.indexOf('{');
  if (open >= 0) {
    const close = key.indexOf('}', open + 1);
    if (close > open + 1) k = key.slice(open + 1, close);
  }
  let crc = 0;
  for (const b of Buffer.from(k)) {
    crc ^= b << 8;
    for (let i = 0; i < 8; i++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc % 16384;
}
