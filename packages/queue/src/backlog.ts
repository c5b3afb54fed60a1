import type { RedisClient } from './redis.ts';
import type { Keys } from './keys.ts';

/**
 * A pool's backlog: the work its workers have or will have in hand, the figure an autoscaler (KEDA)
 * scales the pool on (`faregate_pool_backlog{pool}`, served by the ingress's /metrics):
 *
 *   BullMQ: waiting + prioritized + delayed whose time has come + active
 *   fast lane: entries not taken yet (`due`, which includes those still on the list) + runs in flight
 *     (`run`) but those an ingress hosting the pool runs itself (`hosted`: no worker of the pool has
 *     them, and more workers would not run them) + entries a sweep is handing to BullMQ (`moving`)
 *
 * Delayed jobs not due yet (a retry's backoff, a rate-limit wait) are left out: more workers would
 * not run them sooner. A job a sweep is handing over is counted twice for the instant between its
 * BullMQ add and the lane forgetting it (never zero times). Two round trips per pool (pipelines): BullMQ's keys and the lane's are in
 * different hash tags, so on a Redis Cluster they are in different slots.
 *
 * `ahead`: what a new interactive request queues behind, the figure load shedding bounds (see the
 * ingress's BacklogGate): unprioritized jobs waiting, delayed jobs due, and the lane's entries not
 * taken yet or moving. Not prioritized jobs (batch lines, which BullMQ runs after every job without
 * a priority) and not what is running: however many batch lines wait or run, they are never ahead
 * of an interactive request, and a slot running one frees for it in one line's time (the batch
 * driver yields its in-flight lines to interactive work).
 */
export interface PoolBacklog {
  waiting: number;
  prioritized: number;
  delayedDue: number;
  active: number;
  lane: number;
  total: number;
  ahead: number;
}

/** BullMQ scores a delayed job `timestamp * 0x1000 + counter`: every job due by `nowMs`. */
const dueScore = (nowMs: number) => nowMs * 0x1000 + 0xfff;

export async function poolBacklog(
  redis: RedisClient,
  keys: Keys,
  pool: string,
  nowMs = Date.now(),
): Promise<PoolBacklog> {
  const bull = (part: string) => keys.bull(pool, part);
  const [queue, lane] = await Promise.all([
    redis
      .pipeline()
      .llen(bull('wait'))
      .zcard(bull('prioritized'))
      .zcount(bull('delayed'), 0, dueScore(nowMs))
      .llen(bull('active'))
      .exec(),
    redis
      .pipeline()
      .zcard(keys.fast(pool, 'due'))
      .zcard(keys.fast(pool, 'run'))
      .zcard(keys.fast(pool, 'moving'))
      // Hosted runs still in `run` (a set member a run left some other way, e.g. swept by a worker of
      // an older version that does not know the set, is not subtracted).
      .call('ZINTERCARD', 2, keys.fast(pool, 'run'), keys.fast(pool, 'hosted'))
      .exec(),
  ]);
  const n = (r: [Error | null, unknown][] | null, i: number) => {
    const [err, v] = r?.[i] ?? [new Error('no reply'), 0];
    if (err) throw err;
    return Number(v);
  };
  const b = {
    waiting: n(queue, 0),
    prioritized: n(queue, 1),
    delayedDue: n(queue, 2),
    active: n(queue, 3),
    lane: n(lane, 0) + Math.max(0, n(lane, 1) - n(lane, 3)) + n(lane, 2),
  };
  return {
    ...b,
    total: b.waiting + b.prioritized + b.delayedDue + b.active + b.lane,
    ahead: b.waiting + b.delayedDue + n(lane, 0) + n(lane, 2),
  };
}
