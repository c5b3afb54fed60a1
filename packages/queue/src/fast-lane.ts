import { getEach, type RedisClient } from './redis.ts';
import { isJobEnvelope, type JobData } from '@faregate/contracts/jobs';
import type { Keys } from './keys.ts';
import { luaScript, REDIS_NOW_MS } from './lua.ts';
import type { ProviderQueues } from './queues.ts';

/**
 * The fast lane: hands an interactive request straight to an idle worker of its pool.
 *
 * Through BullMQ a job reaches a worker in three messages (the add wakes the worker's blocking
 * wait, then `moveToActive` is a round trip that returns the job), and ends with a fourth
 * (`moveToFinished`). On a small machine each message between processes costs 0.1–0.3 ms, which
 * is most of what the gateway adds to a fast provider. Here the ingress pushes the job itself onto
 * a list that idle workers block on (`BLMPOP`, which also collects what else waits there, up to the
 * worker's free slots): the job arrives with the message that wakes the worker, which calls the
 * provider at once.
 *
 * Nothing is lost on the way, and no request runs twice:
 * - the push also records the job (`data`) and a deadline to be taken by (`due` = push + grace);
 * - a worker that popped an entry *takes* it (`due` → `run`, with a lease it renews while it runs).
 *   It sends the take right after it calls the provider, and on the same connection as its frame
 *   writes, so Redis orders the take first. An entry older than half the grace right before the
 *   call (popped late, or held up by admission) is taken before the call, which is made only if the
 *   take won: a take lost after the call means a second call by the BullMQ run;
 * - every worker sweeps: a job not taken within the grace (no worker was free), a run whose lease
 *   lapsed (its worker died), or a hand-over interrupted by a crash goes to the pool's BullMQ queue
 *   (idempotent: the BullMQ job id is the request's), where it runs as a restart: it claims the job
 *   before calling, which fences any earlier attempt's writes, and subscribers get a `reset`.
 * Take and sweep both remove the id from `due` atomically, so exactly one of them wins.
 *
 * Workers only pop while they have a free slot, and advertise the lane (`alive`) while they run
 * it; an ingress pushes only to a pool that has it, and otherwise queues on BullMQ as before.
 * A lane job is admitted like a queued one (the worker's runner applies RPM/TPM and learned pauses
 * to both); only pools with a max-in-flight limit, which is BullMQ's global concurrency, do not run it.
 */

// The lane's scripts (fast-lane.*.lua). Those that stamp times share the redis-now.lua prelude.
const timed = { prelude: [REDIS_NOW_MS] };
const pushScript = luaScript<{
  keys: [list: string, due: string, data: string];
  args: [id: string, jobJson: string, graceMs: number];
  result: number;
}>(new URL('./fast-lane.push.lua', import.meta.url), { numberOfKeys: 3, ...timed });
const takeScript = luaScript<{
  keys: [due: string, run: string, data: string, moving: string, hosted: string];
  args: [leaseMs: number, ended: number, adopted: number, ...ids: string[]];
  result: (0 | 1)[];
}>(new URL('./fast-lane.take.lua', import.meta.url), { numberOfKeys: 5, ...timed });
const renewScript = luaScript<{
  keys: [run: string];
  args: [leaseMs: number, ...ids: string[]];
  result: number;
}>(new URL('./fast-lane.renew.lua', import.meta.url), { numberOfKeys: 1, ...timed });
const sweepScript = luaScript<{
  keys: [list: string, due: string, run: string, data: string, moving: string, hosted: string];
  args: [graceMs: number, moveLeaseMs: number, max: number];
  result: string[];
}>(new URL('./fast-lane.sweep.lua', import.meta.url), { numberOfKeys: 6, ...timed });

/** A popped entry: the job and when it was pushed (Redis clock, ms). */
export interface FastEntry {
  pushedAt: number;
  data: JobData;
}

/** A job the sweep took off the lane, to be queued on BullMQ. */
export interface SweptJob {
  id: string;
  data: JobData;
  /** `due`: never taken in time; `run`: its worker stopped renewing; `moving`: a hand-over was cut short. */
  kind: 'due' | 'run' | 'moving';
}

export interface FastLaneTiming {
  /** How long an entry waits for a free worker before it goes to BullMQ. */
  graceMs: number;
  /** A run's lease; its worker renews it every third of this. */
  leaseMs: number;
}

export const DEFAULT_FAST_LANE: FastLaneTiming = { graceMs: 300, leaseMs: 30_000 };

/** A job record written by an ingress (`undefined` if it is not one; see `isJobEnvelope`). */
function parseJob(json: string): JobData | undefined {
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch {
    return undefined;
  }
  return isJobEnvelope(raw) ? raw : undefined;
}

/** The lane of one provider pool. */
export class FastLane {
  readonly redis: RedisClient;
  readonly provider: string;
  readonly timing: FastLaneTiming;
  readonly #k: {
    list: string;
    due: string;
    run: string;
    data: string;
    moving: string;
    hosted: string;
    alive: string;
  };

  constructor(redis: RedisClient, keys: Keys, provider: string, timing: FastLaneTiming = DEFAULT_FAST_LANE) {
    this.redis = redis;
    this.provider = provider;
    this.timing = timing;
    const k = (part: string) => keys.fast(provider, part);
    this.#k = {
      list: k('q'),
      due: k('due'),
      run: k('run'),
      data: k('data'),
      moving: k('moving'),
      hosted: k('hosted'),
      alive: k('alive'),
    };
  }

  /** Worker: up to `count` entries, waiting up to `timeoutS` for the first (BLMPOP: Redis 7). */
  async pop(blocking: RedisClient, count: number, timeoutS: number): Promise<string[]> {
    const r = (await blocking.call('BLMPOP', timeoutS, 1, this.#k.list, 'RIGHT', 'COUNT', count)) as
      | [string, string[]]
      | null;
    return r?.[1] ?? [];
  }

  /** Name of the list idle workers block on. */
  get listKey(): string {
    return this.#k.list;
  }

  get aliveKey(): string {
    return this.#k.alive;
  }

  /** Ingress: hands the job to the pool's idle workers (BullMQ takes it after the grace if none is free). */
  async push(data: JobData): Promise<void> {
    await pushScript(
      this.redis,
      [this.#k.list, this.#k.due, this.#k.data],
      [data.id, JSON.stringify(data), this.timing.graceMs],
    );
  }

  /**
   * Worker: per id, true if the run is ours now, false if the job was swept to BullMQ first.
   * `ended` (runs that ended, see `finish`) are forgotten in the same script, before the takes;
   * `adopt` (jobs run without the list: an ingress hosting the pool) go straight to `run`, leased
   * to the caller, and lead the result (always true).
   */
  async take(
    ids: string[],
    ended: string[] = [],
    adopt: Array<{ id: string; json: string }> = [],
  ): Promise<boolean[]> {
    const pairs = adopt.flatMap((a) => [a.id, a.json]);
    const r = await takeScript(
      this.redis,
      [this.#k.due, this.#k.run, this.#k.data, this.#k.moving, this.#k.hosted],
      [this.timing.leaseMs, ended.length, adopt.length, ...ended, ...pairs, ...ids],
    );
    return r.map((x) => x === 1);
  }

  async renew(ids: string[]): Promise<void> {
    if (ids.length) await renewScript(this.redis, [this.#k.run], [this.timing.leaseMs, ...ids]);
  }

  /** The runs ended, or their jobs were handed to BullMQ: the lane forgets them. */
  async finish(...ids: string[]): Promise<void> {
    if (ids.length) await this.take([], ids);
  }

  /** Takes jobs the lane could not finish off it (leased to the caller for `moveLeaseMs`). */
  async sweep(max = 100, moveLeaseMs = 10_000): Promise<SweptJob[]> {
    const raw = await sweepScript(
      this.redis,
      [this.#k.list, this.#k.due, this.#k.run, this.#k.data, this.#k.moving, this.#k.hosted],
      [this.timing.graceMs, moveLeaseMs, max],
    );
    const out: SweptJob[] = [];
    for (let i = 0; i + 2 < raw.length; i += 3) {
      const id = raw[i] as string;
      const data = parseJob(raw[i + 1] ?? '');
      const kind = raw[i + 2];
      if (!data || (kind !== 'due' && kind !== 'run' && kind !== 'moving')) {
        // Only an ingress writes records: an unreadable one cannot run anywhere. Drop it rather
        // than fail every sweep after it.
        await this.finish(id);
        continue;
      }
      out.push({ id, data, kind });
    }
    return out;
  }

  /**
   * Moves what the lane could not finish (see `sweep`) onto the pool's BullMQ queue, as the same
   * job: its attempts counted after the one the lane made, and a run whose worker stopped renewing
   * (`run`: it had called the provider) marked `lostRun`, so the re-run bills that call. Every worker
   * of the pool does this every few ms; an ingress does it for a pool with no live worker
   * (lost-pools.ts). A crash between the add and `finish` is harmless: the BullMQ job id is the
   * request's, and the entry's hand-over lease (`moving`) lets the next sweep finish it.
   */
  async requeueSwept(queues: Pick<ProviderQueues, 'add'>, max?: number): Promise<SweptJob[]> {
    const swept = await this.sweep(max);
    for (const s of swept) {
      const base = s.data.attemptBase ?? 0;
      const lostRun = s.kind === 'run' ? { lostRun: `${s.data.hop}:${base + 1}` } : {};
      await queues.add({ ...s.data, ...lostRun, attemptBase: Math.max(1, base) });
      await this.finish(s.id);
    }
    return swept;
  }

  /** Worker: the pool runs the lane (refreshed every second; lapses three seconds after the last worker stops). */
  async advertise(ttlMs = 3_000): Promise<void> {
    await this.redis.set(this.#k.alive, '1', 'PX', ttlMs);
  }

  /** Parses an entry popped from `listKey`; throws if it is not one. */
  static parse(entry: string): FastEntry {
    const r = FastLane.read(entry);
    if (!r.ok) throw new Error(r.error);
    return r;
  }

  /** Parses an entry popped from `listKey`: `<pushedAt> <job JSON>`, the job's envelope checked (`isJobEnvelope`). */
  static read(entry: string): ({ ok: true } & FastEntry) | { ok: false; error: string } {
    const sp = entry.indexOf(' ');
    const pushedAt = Number(entry.slice(0, sp));
    const data = parseJob(entry.slice(sp + 1));
    if (sp < 0 || !Number.isFinite(pushedAt) || !data) return { ok: false, error: 'not a fast-lane entry' };
    return { ok: true, pushedAt, data };
  }

  /** Redis's clock (ms), to age entries against. */
  async redisNow(): Promise<number> {
    const [s, us] = await this.redis.time();
    return Number(s) * 1000 + Math.floor(Number(us) / 1000);
  }
}

/** Ingress: the lanes of every pool, and which pools run theirs (refreshed in the background). */
export class FastLanes {
  readonly #redis: RedisClient;
  readonly #keys: Keys;
  readonly #timing: FastLaneTiming;
  readonly #lanes = new Map<string, FastLane>();
  #alive = new Set<string>();
  #timer: NodeJS.Timeout | undefined;

  constructor(redis: RedisClient, keys: Keys, timing: FastLaneTiming = DEFAULT_FAST_LANE, refreshMs = 1_000) {
    this.#redis = redis;
    this.#keys = keys;
    this.#timing = timing;
    this.#timer = setInterval(() => void this.refresh().catch(() => {}), refreshMs);
    this.#timer.unref();
  }

  lane(provider: string): FastLane {
    let lane = this.#lanes.get(provider);
    if (!lane) {
      lane = new FastLane(this.#redis, this.#keys, provider, this.#timing);
      this.#lanes.set(provider, lane);
      void this.refresh().catch(() => {});
    }
    return lane;
  }

  /** The pool's lane if its workers run it (as of the last refresh, at most a second old). */
  available(provider: string): FastLane | undefined {
    const lane = this.lane(provider);
    return this.#alive.has(provider) ? lane : undefined;
  }

  async refresh(): Promise<void> {
    const lanes = [...this.#lanes.values()];
    if (!lanes.length) return;
    // Each lane's keys have their pool's hash tag: one GET per pool on a Redis Cluster.
    const v = await getEach(
      this.#redis,
      lanes.map((l) => l.aliveKey),
    );
    this.#alive = new Set(lanes.filter((_, i) => v[i] === '1').map((l) => l.provider));
  }

  close(): void {
    clearInterval(this.#timer);
  }
}
