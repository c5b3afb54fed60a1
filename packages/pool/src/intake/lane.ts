import type { RedisClient } from '@faregate/queue/redis';
import type { JobData } from '@faregate/contracts/jobs';
import { FastLane, type SweptJob } from '@faregate/queue/fast-lane';
import { handedToKernel } from '@faregate/queue/frame-store';
import type { AttemptOutcome } from '../attempt.ts';
import type { WorkerDeps } from '../deps.ts';
import type { Runner } from '../runner.ts';

/** Most entries one pop takes. */
const POP_BATCH = 32;
/**
 * An idle process sweeps this often rather than every few milliseconds (see #sweepTick), once it has
 * popped nothing for IDLE_AFTER_MS.
 */
const IDLE_SWEEP_MS = 1_000;
const IDLE_AFTER_MS = 2_000;
/**
 * How long the end of a run waits to be told to Redis when no take goes out meanwhile (under load
 * the next pop's take carries it: see #end). Far below the lease, which the ended run no longer renews.
 */
const END_FLUSH_MS = 20;

/**
 * Abort reason of a lane run whose job went to BullMQ before its call (its take, sent first, lost):
 * the run makes no call and writes none of the job's frames (the BullMQ attempt owns the job).
 */
export const RUN_LOST: unique symbol = Symbol('fast-lane run lost');

/**
 * The fast-lane intake of one pool in one process (see packages/queue/src/fast-lane.ts): how a
 * lane job arrives, nothing else. It pops entries while the runner has a free lane slot, takes each
 * (the lane's fence against the sweep), renews the leases of its runs, sweeps what the lane could
 * not finish onto BullMQ, and advertises the lane to the ingress. Admission, limits and pauses are
 * the runner's, as for a queued job.
 *
 * A run is the job's first attempt. Whatever needs the queue afterwards (a retry, a wait for a
 * limit or a 429) goes to BullMQ as the same job, counted from the second attempt (`attemptBase`).
 */
export class LaneIntake {
  readonly #deps: WorkerDeps;
  readonly #runner: Runner;
  readonly #lane: FastLane;
  readonly #blocking: RedisClient | undefined;
  readonly #running = new Map<string, Promise<void>>();
  readonly #timers: NodeJS.Timeout[] = [];
  #slotFreed: (() => void) | undefined;
  #stopping = false;
  #loop: Promise<void> | undefined;
  #sweeping = false;
  #lastSweep = 0;
  /** When a pop last returned entries. */
  #lastPop = 0;
  /** Redis's clock minus ours (entries are stamped by Redis). */
  #offset = 0;
  /** Takes (and adoptions: `json` set) waiting for this turn's script. */
  #takes: Array<{ id: string; json?: string; resolve: (ok: boolean) => void; reject: (e: unknown) => void }> =
    [];
  /** A take is waiting to go out in this turn's flush. */
  #flushing = false;
  /** Runs of the last pop whose provider request has not been written yet (their takes wait for it). */
  #callsPending = 0;
  /** A take that must not wait for the batch (it gates its own run's call). */
  #urgent = false;
  /** Runs that ended (or whose jobs went to BullMQ), not yet forgotten by the lane (see #end). */
  #ended: string[] = [];
  #endTimer: NodeJS.Timeout | undefined;

  /**
   * `blocking`: the connection the intake pops the lane on. Without one the intake is *local*: it
   * runs only what its own process hands it (`runLocal`: an ingress hosting the pool, its local-pools.ts),
   * never pops, sweeps or advertises the lane; the pool's workers do.
   */
  constructor(deps: WorkerDeps, runner: Runner, lane: FastLane, blocking: RedisClient | undefined) {
    this.#deps = deps;
    this.#runner = runner;
    this.#lane = lane;
    this.#blocking = blocking;
    runner.onChange(() => this.#slotFreed?.());
  }

  get enabled(): boolean {
    return !this.#stopping && this.#runner.laneAllowed();
  }

  async start(): Promise<void> {
    await this.#syncClock();
    const { leaseMs, graceMs } = this.#lane.timing;
    this.#every(Math.max(100, Math.floor(leaseMs / 3)), () => this.#lane.renew([...this.#running.keys()]));
    if (!this.#blocking) return;
    this.#every(Math.max(20, Math.min(100, Math.floor(graceMs / 3))), () => this.#sweepTick());
    this.#every(1_000, () =>
      this.enabled ? this.#lane.advertise() : this.#lane.redis.del(this.#lane.aliveKey),
    );
    this.#every(30_000, () => this.#syncClock());
    if (this.enabled) await this.#lane.advertise();
    this.#loop = this.#popLoop(this.#blocking);
  }

  /** Stops taking jobs; resolves when the runs in flight ended (or `timeoutMs` passed). */
  async stop(timeoutMs: number): Promise<boolean> {
    this.#stopping = true;
    this.#slotFreed?.();
    if (this.#blocking) {
      await this.#lane.redis.del(this.#lane.aliveKey).catch(() => {});
      // An entry popped as the connection closes stays due: another worker's sweep queues it.
      this.#blocking.disconnect();
    }
    await this.#loop?.catch(() => {});
    const drained = await Promise.race([
      Promise.allSettled([...this.#running.values()]).then(() => true),
      new Promise<false>((r) => setTimeout(() => r(false), timeoutMs).unref()),
    ]);
    for (const t of this.#timers) clearInterval(t);
    await this.#flushEnded().catch(() => {});
    return drained;
  }

  /** Moves jobs the lane could not finish to BullMQ (every worker runs it, every few ms). */
  async sweep(): Promise<SweptJob[]> {
    if (this.#sweeping) return [];
    this.#sweeping = true;
    try {
      // A restart: the run (if any) is fenced by the BullMQ attempt's claim, subscribers reset.
      const swept = await this.#lane.requeueSwept(this.#deps.queues);
      for (const s of swept) {
        // `due`: every slot was busy for the whole grace (load); the others follow a crash.
        this.#deps.metrics.fastLane.inc({ event: `queued_${s.kind}` });
        const level = s.kind === 'due' ? 'debug' : 'warn';
        this.#deps.log[level]({ job: s.id, kind: s.kind }, 'fast lane: job moved to the queue');
      }
      return swept;
    } finally {
      this.#sweeping = false;
    }
  }

  /**
   * The sweep's timer. A process that is idle (lane on, a free slot, no run in flight, nothing popped
   * for a while) is blocked on the lane, so a pushed entry reaches it (or another idle process) the
   * moment it is pushed and cannot go past its grace unseen; only what a crashed process left
   * behind can need sweeping, and that waits a lease or a grace anyway. So an idle process sweeps
   * every IDLE_SWEEP_MS: on a box running every pool, the idle pools' sweeps were most of the
   * gateway's CPU at rest (ten Redis round trips a second per process).
   */
  #sweepTick(): Promise<unknown> {
    const now = Date.now();
    const idle =
      this.enabled &&
      this.#running.size === 0 &&
      this.#runner.laneFree() > 0 &&
      now - this.#lastPop >= IDLE_AFTER_MS;
    if (idle && now - this.#lastSweep < IDLE_SWEEP_MS) return Promise.resolve();
    this.#lastSweep = now;
    return this.sweep();
  }

  #every(ms: number, f: () => Promise<unknown>): void {
    const t = setInterval(() => {
      f().catch((e: unknown) => this.#deps.log.warn({ err: String(e) }, 'fast lane upkeep failed'));
    }, ms);
    t.unref();
    this.#timers.push(t);
  }

  async #syncClock(): Promise<void> {
    const t0 = Date.now();
    const r = await this.#lane.redisNow();
    this.#offset = r - (t0 + Date.now()) / 2;
  }

  async #popLoop(blocking: RedisClient): Promise<void> {
    while (!this.#stopping) {
      const free = this.#runner.laneFree();
      if (!this.enabled || free <= 0) {
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, 250);
          this.#slotFreed = () => {
            clearTimeout(t);
            resolve();
          };
        });
        this.#slotFreed = undefined;
        continue;
      }
      let popped: string[];
      try {
        // Several at once when a burst queued up: one round trip for all the free slots.
        popped = await this.#lane.pop(blocking, Math.min(POP_BATCH, free), 1);
      } catch (e) {
        if (this.#stopping) break;
        this.#deps.log.warn({ err: String(e) }, 'fast lane: pop failed');
        await new Promise((r) => setTimeout(r, 500));
        continue;
      }
      if (popped.length > 0) this.#lastPop = Date.now();
      // The next pop (a write to Redis) goes out behind these runs' own provider requests, and so
      // do their takes: one script for the whole pop (see #take).
      this.#callsPending = popped.length;
      await Promise.all(popped.map((entry) => this.#begin(entry)));
      this.#callsPending = 0;
      this.#flushTakes();
    }
  }

  /**
   * Runs a job its own process hands over (a local intake: see the constructor), as a lane run
   * that was never on the list: the job goes straight to `run` under this process's lease (one
   * script for the turn's adoptions and the ended runs it forgets), and runs at once. Resolves false,
   * with nothing written, when every local slot is taken or the pool does not run the lane (the
   * caller pushes the job to the lane as usual).
   *
   * The run does not wait for the adoption's reply: its script is written to Redis's connection in
   * this turn's microtasks, before the run can write its provider request (a later turn at the
   * soonest), so a process that dies after the call has its run recorded, and the pool's sweep
   * re-runs it and bills the call. Right before the call the run waits for the reply only if the
   * script's bytes may still be in this process (the socket's buffer not yet taken by the kernel,
   * or a Cluster); a connection that is not ready (its commands wait in a queue) makes the
   * hand-over itself wait for the adoption, and fail with it.
   */
  async runLocal(data: JobData): Promise<boolean> {
    if (!this.enabled || this.#running.size >= this.#localSlots()) return false;
    const id = data.id;
    // The slot is held from here: concurrent hand-overs of one turn see it taken.
    let release!: () => void;
    const held = new Promise<void>((r) => {
      release = r;
    });
    this.#running.set(id, held);
    const recorded = this.#take(id, true, JSON.stringify(data));
    if (this.#lane.redis.status !== 'ready') {
      try {
        await recorded;
      } catch (e) {
        this.#running.delete(id);
        release();
        throw e;
      }
    } else {
      // The run goes on either way: the job is this process's (no list entry, nothing to sweep but
      // this record), which only a crash would need.
      recorded.catch((e: unknown) =>
        this.#deps.log.warn({ job: id, err: String(e) }, 'fast lane: a hosted run was not recorded'),
      );
    }
    let settled = false;
    const replied = recorded.then(
      () => {
        settled = true;
        return true as const;
      },
      () => true as const,
    );
    // Nothing else can run the job before this run's lease lapses: no claim before the call.
    const run = this.#attempt(data, {
      speculative: true,
      signal: new AbortController().signal,
      taken: Promise.resolve(true),
      calling: () => {},
      beforeCall: () => (settled || handedToKernel(this.#lane.redis) ? true : replied),
    }).finally(() => {
      this.#running.delete(id);
      release();
      this.#slotFreed?.();
    });
    this.#running.set(id, run);
    return true;
  }

  /** Runs a local intake may hold: the process's slots less BullMQ's one (see Runner.laneFree). */
  #localSlots(): number {
    return Math.max(0, this.#deps.config.WORKER_CONCURRENCY - 1);
  }

  /** Starts a run; resolves once its provider request was issued (or the run ended without one). */
  #begin(entry: string): Promise<void> {
    const parsed = FastLane.read(entry);
    if (!parsed.ok) {
      // Only an ingress writes entries, so this is a bug; the sweep drops its record after the grace.
      this.#deps.log.error({ err: parsed.error }, 'fast lane: unreadable entry');
      return Promise.resolve();
    }
    const { data, pushedAt } = parsed;
    let calling!: () => void;
    const called = new Promise<void>((r) => {
      calling = r;
    });
    void called.then(() => {
      this.#callsPending--;
      this.#flushTakes();
    });
    const run = this.#run(data, pushedAt, calling).finally(() => {
      calling();
      this.#running.delete(data.id);
      this.#slotFreed?.();
    });
    this.#running.set(data.id, run);
    return called;
  }

  async #run(data: JobData, pushedAt: number, calling: () => void): Promise<void> {
    const id = data.id;
    const lost = new AbortController();
    // A fresh entry cannot have been swept yet (that takes the whole grace): its take goes out right
    // after this job's own provider request, not in front of it, and the attempt may skip its claim.
    // Fresh is judged again right before the call (`beforeCall`): admission (the shared limiter's
    // round trips), the circuit or a loaded process may have held the run past half the grace, and
    // the sweep queues the job at the end of it. Then the take goes out first, and the call only
    // if it won: a take that loses after the call is a second provider call (BullMQ's), which the
    // frame store's fencing does not undo. Should the take lose all the same, after the call, the
    // run is not stopped: the provider bills that call whether or not its answer is read, so the
    // run reads it and bills what the provider reported (stopped, a non-streaming call that had
    // not answered yet was billed nothing). Its frames are fenced as any attempt's: the BullMQ
    // attempt's claim takes the job over, or, if the run's write comes first, the run completes the
    // job and the BullMQ attempt finds it ended and makes no call.
    const freshUntil = pushedAt - this.#offset + this.#lane.timing.graceMs / 2;
    const fresh = Date.now() < freshUntil;
    let taken: Promise<boolean>;
    if (fresh) {
      let requested = false;
      let resolveTaken!: (ok: boolean) => void;
      taken = new Promise<boolean>((r) => {
        resolveTaken = r;
      });
      // After the call the take may wait for the pop's other calls (one script for all); before
      // it (`urgent`) it goes out at once, as the call waits for it.
      const requestTake = (urgent: boolean) => {
        if (requested) return;
        requested = true;
        this.#take(id, urgent).then(
          (ok) => {
            // Lost before the call (`beforeCall` waits for this take): no call is made.
            if (!ok && urgent) lost.abort(RUN_LOST);
            resolveTaken(ok);
          },
          () => {
            if (urgent) lost.abort(RUN_LOST);
            resolveTaken(false);
          },
        );
      };
      const onCalling = () => requestTake(false);
      const beforeCall = (): true | Promise<boolean> => {
        if (Date.now() < freshUntil) return true;
        requestTake(true);
        return taken;
      };
      return this.#attempt(data, {
        speculative: true,
        signal: lost.signal,
        taken,
        onCalling,
        calling,
        beforeCall,
      });
    }
    taken = this.#take(id, true).catch(() => false);
    if (!(await taken)) return; // old enough to have been swept: it was, and runs on BullMQ
    return this.#attempt(data, { speculative: false, signal: lost.signal, taken, calling });
  }

  async #attempt(
    data: JobData,
    o: {
      speculative: boolean;
      signal: AbortSignal;
      taken: Promise<boolean>;
      onCalling?: () => void;
      calling: () => void;
      beforeCall?: () => true | Promise<boolean>;
    },
  ): Promise<void> {
    const deps = this.#deps;
    deps.metrics.fastLane.inc({ event: 'run' });
    let outcome: AttemptOutcome | undefined;
    try {
      outcome = await this.#runner.run({
        data,
        via: 'lane',
        starts: 1,
        made: 0,
        stalled: false,
        speculative: o.speculative,
        signal: o.signal,
        onCalling: () => {
          o.onCalling?.();
          o.calling();
        },
        beforeCall: o.beforeCall,
      });
    } catch (e) {
      deps.log.error({ job: data.id, err: String(e) }, 'fast lane: run failed');
    }
    if (!(await o.taken) || o.signal.aborted) {
      deps.metrics.fastLane.inc({ event: 'lost' });
      return; // swept to BullMQ: that run owns the job now
    }
    try {
      if (outcome?.status === 'wait') {
        // The pool waits (BullMQ's pause for every process; the limiter's for the lane), the job
        // waits on the queue without using an attempt. No wait (a full max-in-flight): the job just
        // takes its turn on the queue.
        if (outcome.waitMs > 0 && !outcome.jobOnly) await deps.queue.rateLimit(outcome.waitMs);
        await this.#handOver(data, outcome.waitMs);
      } else if (outcome === undefined || outcome.status === 'retry') {
        // A retry (its `retrying` frame is written): BullMQ's backoff applies.
        await this.#handOver(data, 250 + Math.floor(Math.random() * 250));
      }
      this.#end([data.id]);
    } catch (e) {
      // The lease lapses and the sweep hands the job to BullMQ.
      deps.log.error(
        { job: data.id, err: String(e) },
        'fast lane: could not end a run; its lease will lapse',
      );
    }
  }

  /**
   * The lane forgets a run that ended with the next take script (one Redis call for both; under
   * load a pop follows within a millisecond), or after END_FLUSH_MS if none goes out. Until then
   * the run's entry stays in `run` with the lease it had: a process that dies in between leaves it
   * to lapse, and the sweep's BullMQ attempt finds the job ended and makes no call.
   */
  #end(ids: string[], delayMs = END_FLUSH_MS): void {
    if (!ids.length) return;
    this.#ended.push(...ids);
    this.#endTimer ??= setTimeout(() => {
      this.#endTimer = undefined;
      this.#flushEnded().catch((e: unknown) =>
        this.#deps.log.warn({ err: String(e) }, 'fast lane: could not forget ended runs'),
      );
    }, delayMs).unref();
  }

  async #flushEnded(): Promise<void> {
    const ended = this.#takeEnded();
    try {
      await this.#lane.finish(...ended);
    } catch (e) {
      // Redis is failing: try again in a while (the leases are long). Once stopped, not at all:
      // the leases lapse and the sweep finds those jobs ended.
      if (!this.#stopping) this.#end(ended, 1_000);
      throw e;
    }
  }

  /** The ended runs to forget now (the caller puts them back if its script fails). */
  #takeEnded(): string[] {
    const ended = this.#ended;
    this.#ended = [];
    clearTimeout(this.#endTimer);
    this.#endTimer = undefined;
    return ended;
  }

  /**
   * Takes go to Redis together: those of one turn of the event loop, and those that follow their
   * run's provider call (not `urgent`) wait until every run of the same pop has written its call
   * (or ended), so a pop of n entries costs one take script, not n.
   */
  #take(id: string, urgent = false, json?: string): Promise<boolean> {
    return new Promise((resolve, reject) => {
      this.#takes.push({ id, json, resolve, reject });
      if (urgent) this.#urgent = true;
      this.#flushTakes();
    });
  }

  #flushTakes(): void {
    if (this.#flushing || !this.#takes.length || (this.#callsPending > 0 && !this.#urgent)) return;
    this.#flushing = true;
    queueMicrotask(() => {
      this.#flushing = false;
      this.#urgent = false;
      const batch = this.#takes;
      this.#takes = [];
      if (!batch.length) return;
      const ended = this.#takeEnded();
      const adopt = batch.filter((t) => t.json !== undefined);
      const take = batch.filter((t) => t.json === undefined);
      this.#lane
        .take(
          take.map((t) => t.id),
          ended,
          adopt.map((t) => ({ id: t.id, json: t.json ?? '' })),
        )
        .then(
          (oks) => {
            for (const [i, t] of [...adopt, ...take].entries()) t.resolve(oks[i] === true);
          },
          (e: unknown) => {
            this.#end(ended, 1_000);
            for (const t of batch) t.reject(e);
          },
        );
    });
  }

  async #handOver(data: JobData, delayMs: number): Promise<void> {
    this.#deps.metrics.fastLane.inc({ event: 'handed_over' });
    await this.#queue(data, 1, delayMs);
  }

  /** The job on this pool's BullMQ queue, its attempts counted after `attemptBase` made on the lane. */
  async #queue(data: JobData, attemptBase: number, delayMs?: number): Promise<void> {
    await this.#deps.queues.add({ ...data, attemptBase }, undefined, delayMs ? { delay: delayMs } : {});
  }
}
