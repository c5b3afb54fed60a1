import type { Redis, Result } from 'ioredis';
import type { JobData } from '@faregate/contracts/jobs';
import type { Keys } from './keys.ts';

/**
 * The fast lane: hands an interactive request straight to an idle worker of its pool.
 *
 * Through BullMQ a job reaches a worker in three messages (the add wakes the worker's blocking
 * wait, then `moveToActive` is a round trip that returns the job), and ends with a fourth
 * (`moveToFinished`). On a small machine each message between processes costs 0.1–0.3 ms, which
 * is most of what the gateway adds to a fast provider. Here the ingress pushes the job itself onto
 * a list that idle workers block on (`BRPOP`): the job arrives with the message that wakes the
 * worker, which calls the provider at once.
 *
 * Nothing is lost on the way, and no request runs twice:
 * - the push also records the job (`data`) and a deadline to be taken by (`due` = push + grace);
 * - a worker that popped an entry *takes* it (`due` → `run`, with a lease it renews while it runs).
 *   It sends the take before it calls the provider, and on the same connection as its frame
 *   writes, so Redis orders the take first. An entry older than half the grace is taken before the
 *   call rather than alongside it;
 * - every worker sweeps: a job not taken within the grace (no worker was free), a run whose lease
 *   lapsed (its worker died), or a hand-over interrupted by a crash goes to the pool's BullMQ queue
 *   (idempotent: the BullMQ job id is the request's), where it runs as a restart: it claims the job
 *   before calling, which fences any earlier attempt's writes, and subscribers get a `reset`.
 * Take and sweep both remove the id from `due` atomically, so exactly one of them wins.
 *
 * Workers only pop while they have a free slot, and advertise the lane (`alive`) while they run
 * it; an ingress pushes only to a pool that has it, and otherwise queues on BullMQ as before.
 * Pools with shared limits (RPM/TPM/max in flight) do not run the lane: their admission is BullMQ's.
 */

/** Lua prelude of the scripts that stamp times: `now`, Redis's clock in ms (one clock for every process). */
const NOW_MS = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`;

// KEYS: list, due, data. ARGV: id, jobJson, graceMs. Returns the push time (Redis clock, ms).
const PUSH = `
${NOW_MS}redis.call('LPUSH', KEYS[1], now .. ' ' .. ARGV[2])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
return now
`;

// KEYS: due, run. ARGV: leaseMs, id... Returns per id 1 if this caller now runs the job, 0 if it
// was swept.
const TAKE = `
${NOW_MS}local until_ = now + tonumber(ARGV[1])
local out = {}
for i = 2, #ARGV do
  if redis.call('ZREM', KEYS[1], ARGV[i]) == 1 then
    redis.call('ZADD', KEYS[2], until_, ARGV[i])
    out[i - 1] = 1
  else
    out[i - 1] = 0
  end
end
return out
`;

// KEYS: run. ARGV: leaseMs, id... Extends the leases of runs still held (XX: never revives one).
const RENEW = `
${NOW_MS}local until_ = now + tonumber(ARGV[1])
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], 'XX', until_, ARGV[i]) end
return 0
`;

// KEYS: run, data, moving. ARGV: id. The run ended (or its job is on BullMQ now): forget it.
const FINISH = `
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return 0
`;

// KEYS: list, due, run, data, moving. ARGV: graceMs, moveLeaseMs, max.
// Drops list entries past the grace (their jobs are swept below, or were taken), and moves due
// jobs, lapsed runs and lapsed hand-overs to `moving` (leased to this sweeper). Returns
// [id, jobJson, kind, ...] with kind 'due' | 'run' | 'moving'.
const SWEEP = `
${NOW_MS}local grace = tonumber(ARGV[1])
for i = 1, 1000 do
  local e = redis.call('LINDEX', KEYS[1], -1)
  if not e then break end
  local ts = tonumber(string.match(e, '^(%d+) '))
  if ts and ts + grace > now then break end
  redis.call('RPOP', KEYS[1])
end
local out = {}
local sets = { { KEYS[2], 'due' }, { KEYS[3], 'run' }, { KEYS[5], 'moving' } }
for _, s in ipairs(sets) do
  local ids = redis.call('ZRANGEBYSCORE', s[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
  for _, id in ipairs(ids) do
    redis.call('ZREM', s[1], id)
    local d = redis.call('HGET', KEYS[4], id)
    if d then
      redis.call('ZADD', KEYS[5], now + tonumber(ARGV[2]), id)
      table.insert(out, id)
      table.insert(out, d)
      table.insert(out, s[2])
    end
  end
end
return out
`;

declare module 'ioredis' {
  interface RedisCommander<Context> {
    syFastPush(
      list: string,
      due: string,
      data: string,
      id: string,
      job: string,
      graceMs: number,
    ): Result<number, Context>;
    syFastTake(due: string, run: string, leaseMs: number, ...ids: string[]): Result<number[], Context>;
    syFastRenew(run: string, leaseMs: number, ...ids: string[]): Result<number, Context>;
    syFastFinish(run: string, data: string, moving: string, id: string): Result<number, Context>;
    syFastSweep(
      list: string,
      due: string,
      run: string,
      data: string,
      moving: string,
      graceMs: number,
      moveLeaseMs: number,
      max: number,
    ): Result<string[], Context>;
  }
}

function defineCommands(redis: Redis): void {
  if (typeof (redis as Partial<Redis>).syFastPush === 'function') return;
  redis.defineCommand('syFastPush', { numberOfKeys: 3, lua: PUSH });
  redis.defineCommand('syFastTake', { numberOfKeys: 2, lua: TAKE });
  redis.defineCommand('syFastRenew', { numberOfKeys: 1, lua: RENEW });
  redis.defineCommand('syFastFinish', { numberOfKeys: 3, lua: FINISH });
  redis.defineCommand('syFastSweep', { numberOfKeys: 5, lua: SWEEP });
}

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

/** The lane of one provider pool. */
export class FastLane {
  readonly redis: Redis;
  readonly provider: string;
  readonly timing: FastLaneTiming;
  readonly #k: { list: string; due: string; run: string; data: string; moving: string; alive: string };

  constructor(redis: Redis, keys: Keys, provider: string, timing: FastLaneTiming = DEFAULT_FAST_LANE) {
    defineCommands(redis);
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
      alive: k('alive'),
    };
  }

  /** Worker: up to `count` entries, waiting up to `timeoutS` for the first (BLMPOP: Redis 7). */
  async pop(blocking: Redis, count: number, timeoutS: number): Promise<string[]> {
    const r = (await blocking.blmpop(timeoutS, 1, this.#k.list, 'RIGHT', 'COUNT', count)) as
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
    await this.redis.syFastPush(
      this.#k.list,
      this.#k.due,
      this.#k.data,
      data.id,
      JSON.stringify(data),
      this.timing.graceMs,
    );
  }

  /** Worker: per id, true if the run is ours now, false if the job was swept to BullMQ first. */
  async take(ids: string[]): Promise<boolean[]> {
    const r = await this.redis.syFastTake(this.#k.due, this.#k.run, this.timing.leaseMs, ...ids);
    return r.map((x) => x === 1);
  }

  async renew(ids: string[]): Promise<void> {
    if (ids.length) await this.redis.syFastRenew(this.#k.run, this.timing.leaseMs, ...ids);
  }

  /** The run ended, or its job was handed to BullMQ: the lane forgets it. */
  async finish(id: string): Promise<void> {
    await this.redis.syFastFinish(this.#k.run, this.#k.data, this.#k.moving, id);
  }

  /** Takes jobs the lane could not finish off it (leased to the caller for `moveLeaseMs`). */
  async sweep(max = 100, moveLeaseMs = 10_000): Promise<SweptJob[]> {
    const raw = await this.redis.syFastSweep(
      this.#k.list,
      this.#k.due,
      this.#k.run,
      this.#k.data,
      this.#k.moving,
      this.timing.graceMs,
      moveLeaseMs,
      max,
    );
    const out: SweptJob[] = [];
    for (let i = 0; i + 2 < raw.length; i += 3) {
      const id = raw[i] as string;
      let data: JobData;
      try {
        data = JSON.parse(raw[i + 1] as string) as JobData;
      } catch {
        // Only an ingress writes records: an unreadable one cannot run anywhere. Drop it rather
        // than fail every sweep after it.
        await this.finish(id);
        continue;
      }
      out.push({ id, data, kind: raw[i + 2] as SweptJob['kind'] });
    }
    return out;
  }

  /** Worker: the pool runs the lane (refreshed every second; lapses three seconds after the last worker stops). */
  async advertise(ttlMs = 3_000): Promise<void> {
    await this.redis.set(this.#k.alive, '1', 'PX', ttlMs);
  }

  /** Parses an entry popped from `listKey`. */
  static parse(entry: string): FastEntry {
    const sp = entry.indexOf(' ');
    return { pushedAt: Number(entry.slice(0, sp)), data: JSON.parse(entry.slice(sp + 1)) as JobData };
  }

  /** Redis's clock (ms), to age entries against. */
  async redisNow(): Promise<number> {
    const [s, us] = await this.redis.time();
    return Number(s) * 1000 + Math.floor(Number(us) / 1000);
  }
}

/** Ingress: the lanes of every pool, and which pools run theirs (refreshed in the background). */
export class FastLanes {
  readonly #redis: Redis;
  readonly #keys: Keys;
  readonly #timing: FastLaneTiming;
  readonly #lanes = new Map<string, FastLane>();
  #alive = new Set<string>();
  #timer: NodeJS.Timeout | undefined;

  constructor(redis: Redis, keys: Keys, timing: FastLaneTiming = DEFAULT_FAST_LANE, refreshMs = 1_000) {
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
    const v = await this.#redis.mget(...lanes.map((l) => l.aliveKey));
    this.#alive = new Set(lanes.filter((_, i) => v[i] === '1').map((l) => l.provider));
  }

  close(): void {
    clearInterval(this.#timer);
  }
}
