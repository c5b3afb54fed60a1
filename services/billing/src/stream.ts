import type { RedisClient } from '@faregate/queue/redis';

/** A stream entry as returned by XREADGROUP / XAUTOCLAIM: id and flat field list (null if deleted). */
export type Entry = [id: string, fields: string[] | null];

/** Creates the consumer group from the stream's beginning (events written before billing first ran count too). */
export async function ensureGroup(redis: RedisClient, key: string, group: string): Promise<void> {
  try {
    await redis.call('XGROUP', ['CREATE', key, group, '0', 'MKSTREAM']);
  } catch (e) {
    if (!String((e as Error).message).includes('BUSYGROUP')) throw e;
  }
}

/** XREADGROUP for one stream: `id` is `>` for new entries or an id to re-read this consumer's pending list. */
export async function readGroup(
  redis: RedisClient,
  o: { key: string; group: string; consumer: string; count: number; id: string; blockMs?: number },
): Promise<Entry[]> {
  const args: (string | number)[] = ['GROUP', o.group, o.consumer, 'COUNT', o.count];
  if (o.blockMs !== undefined) args.push('BLOCK', o.blockMs);
  args.push('STREAMS', o.key, o.id);
  const res = (await redis.call('XREADGROUP', args)) as unknown[] | null;
  if (!res || res.length === 0) return [];
  // RESP2: [[key, entries]]. RESP3 (ioredis' default) with legacy mapping: the map flattened to [key, entries].
  if (typeof res[0] === 'string') return (res[1] as Entry[] | null) ?? [];
  return ((res[0] as [string, Entry[]])[1] as Entry[] | null) ?? [];
}

/**
 * XREADGROUP of new entries (`>`) from several streams, `count` per stream: one command on a single
 * server. On a Redis Cluster, where the streams are in different slots (a multi-stream read is
 * cross-slot), one read per stream, sent at once and never blocking (`blockMs` applies to one
 * stream only there: a blocked read would hold its node's connection for the others).
 */
export async function readGroups(
  redis: RedisClient,
  o: { keys: readonly string[]; group: string; consumer: string; count: number; blockMs?: number },
): Promise<Map<string, Entry[]>> {
  if (redis.isCluster && o.keys.length > 1) {
    const { keys, blockMs: _, ...one } = o;
    const lists = await Promise.all(keys.map((key) => readGroup(redis, { ...one, key, id: '>' })));
    return new Map(keys.map((key, i) => [key, lists[i] ?? []]));
  }
  const args: (string | number)[] = ['GROUP', o.group, o.consumer, 'COUNT', o.count];
  if (o.blockMs !== undefined) args.push('BLOCK', o.blockMs);
  args.push('STREAMS', ...o.keys);
  for (let i = 0; i < o.keys.length; i++) args.push('>');
  const res = (await redis.call('XREADGROUP', args)) as unknown[] | null;
  const out = new Map<string, Entry[]>();
  if (!res) return out;
  // RESP2: [[key, entries], …]. RESP3 with legacy mapping: the map flattened to [key, entries, …].
  if (typeof res[0] === 'string') {
    for (let i = 0; i + 1 < res.length; i += 2)
      out.set(res[i] as string, (res[i + 1] as Entry[] | null) ?? []);
  } else {
    for (const pair of res as [string, Entry[] | null][]) out.set(pair[0], pair[1] ?? []);
  }
  return out;
}

/** XAUTOCLAIM: takes over entries idle longer than `minIdleMs` (their consumer died). */
export async function autoClaim(
  redis: RedisClient,
  o: { key: string; group: string; consumer: string; minIdleMs: number; cursor: string; count: number },
): Promise<{ next: string; entries: Entry[] }> {
  const res = (await redis.call('XAUTOCLAIM', [
    o.key,
    o.group,
    o.consumer,
    o.minIdleMs,
    o.cursor,
    'COUNT',
    o.count,
  ])) as [string, Entry[], string[]?];
  // Entries deleted from the stream come back as null (Redis 6.2) or in the third element (7+,
  // already dropped from the pending list): nothing to settle either way.
  return { next: res[0], entries: res[1] };
}

export const idMillis = (id: string): number => Number(id.slice(0, id.indexOf('-')));

export interface StreamStatus {
  /** Delivered to a consumer, not yet acked. */
  pending: number;
  /** Not yet delivered to any consumer of the group. */
  backlog: number;
  /** Stream time (ms) of the oldest unsettled entry, or null when everything is settled. */
  oldestMs: number | null;
  /** Entries below this id are settled and acked: safe to trim. */
  trimBelow: string | null;
}

function field(flat: unknown[], name: string): unknown {
  for (let i = 0; i + 1 < flat.length; i += 2) if (flat[i] === name) return flat[i + 1];
  return undefined;
}

/**
 * Lag and a safe trim point. The group's last-delivered id and its pending summary are read in one
 * MULTI so no delivery can slip between them (trimming past a pending entry would lose money).
 */
export async function streamStatus(redis: RedisClient, key: string, group: string): Promise<StreamStatus> {
  const res = await redis.multi().call('XINFO', ['GROUPS', key]).call('XPENDING', [key, group]).exec();
  if (!res) throw new Error('MULTI aborted');
  const [groupsRes, pendingRes] = res;
  if (groupsRes?.[0]) throw groupsRes[0];
  if (pendingRes?.[0]) throw pendingRes[0];
  const groups = (groupsRes?.[1] ?? []) as unknown[][];
  const g = groups.find((x) => field(x, 'name') === group);
  if (!g) return { pending: 0, backlog: 0, oldestMs: null, trimBelow: null };
  const lastDelivered = String(field(g, 'last-delivered-id'));
  const lagRaw = field(g, 'lag');
  const [count, minPending] = (pendingRes?.[1] ?? [0, null]) as [number, string | null];
  let backlog = typeof lagRaw === 'number' ? lagRaw : 0;
  let firstUndelivered: string | null = null;
  if (backlog > 0 || lagRaw === null || lagRaw === undefined) {
    const next = (await redis.call('XRANGE', [key, `(${lastDelivered}`, '+', 'COUNT', 1])) as Entry[];
    firstUndelivered = next[0]?.[0] ?? null;
    if (firstUndelivered === null) backlog = 0;
    else if (lagRaw === null || lagRaw === undefined) backlog = Math.max(backlog, 1); // unknown after deletions
  }
  const oldest = count > 0 && minPending ? minPending : firstUndelivered;
  return {
    pending: count,
    backlog,
    oldestMs: oldest === null ? null : idMillis(oldest),
    trimBelow: count > 0 && minPending ? minPending : lastDelivered === '0-0' ? null : lastDelivered,
  };
}
