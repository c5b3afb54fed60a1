import type { Redis } from 'ioredis';
import type { JobData } from '@faregate/contracts/jobs';
import { FastLane, type SweptJob } from '@faregate/queue/fast-lane';
import { RUN_LOST, runAttempt, type AttemptOutcome } from './attempt.ts';
import type { WorkerDeps } from './deps.ts';
import { afterNextRequestSent } from '@faregate/providers/http';

/** How long the pop loop and a run's take wait for the run's provider request to be written. */
const SENT_WAIT_MS = 5;
/** Most entries one pop takes. */
const POP_BATCH = 32;

/**
 * Runs this pool's fast lane in one worker process (see packages/queue/src/fast-lane.ts): pops
 * jobs while the process has a free slot, renews the leases of its runs, sweeps what the lane could
 * not finish onto BullMQ, and advertises the lane to the ingress.
 *
 * A run is the job's first attempt. Whatever needs the queue afterwards (a retry after a retryable
 * error, a wait after a 429) goes to BullMQ as the same job, counted from the second attempt.
 */

export class FastRunner {
  readonly #deps: WorkerDeps;
  readonly #lane: FastLane;
  readonly #blocking: Redis;
  readonly #workerId: string;
  readonly #onBusy: (busy: number) => void;
  readonly #running = new Map<string, Promise<void>>();
  readonly #timers: NodeJS.Timeout[] = [];
  #slotFreed: (() => void) | undefined;
  #stopping = false;
  #loop: Promise<void> | undefined;
  #sweeping = false;
  /** Redis's clock minus ours (entries are stamped by Redis). */
  #offset = 0;
  #nextKey = 0;
  #takes: Array<{ id: string; resolve: (ok: boolean) => void; reject: (e: unknown) => void }> = [];

  constructor(
    deps: WorkerDeps,
    lane: FastLane,
    blocking: Redis,
    workerId: string,
    /** Told how many lane runs this process has in flight (BullMQ's concurrency gives way to them). */
    onBusy: (busy: number) => void = () => {},
  ) {
    this.#deps = deps;
    this.#lane = lane;
    this.#blocking = blocking;
    this.#workerId = workerId;
    this.#onBusy = onBusy;
  }

  /**
   * The lane runs only in pools without shared limits (their admission is BullMQ's and the
   * limiter's), and with two slots or more: BullMQ keeps at least one, since its concurrency cannot
   * drop to zero, and the process never runs more than WORKER_CONCURRENCY jobs.
   */
  get enabled(): boolean {
    const l = this.#deps.limits;
    return !this.#stopping && !l.rpm && !l.tpm && !l.maxInFlight && this.#deps.config.WORKER_CONCURRENCY > 1;
  }

  async start(): Promise<void> {
    await this.#syncClock();
    const { leaseMs, graceMs } = this.#lane.timing;
    this.#every(Math.max(100, Math.floor(leaseMs / 3)), () => this.#lane.renew([...this.#running.keys()]));
    this.#every(Math.max(20, Math.min(100, Math.floor(graceMs / 3))), () => this.sweep());
    this.#every(1_000, () =>
      this.enabled ? this.#lane.advertise() : this.#lane.redis.del(this.#lane.aliveKey),
    );
    this.#every(30_000, () => this.#syncClock());
    if (this.enabled) await this.#lane.advertise();
    this.#loop = this.#popLoop();
  }

  /** Stops taking jobs; resolves when the runs in flight ended (or `timeoutMs` passed). */
  async stop(timeoutMs: number): Promise<boolean> {
    this.#stopping = true;
    this.#slotFreed?.();
    await this.#lane.redis.del(this.#lane.aliveKey).catch(() => {});
    // An entry popped as the connection closes stays due: another worker's sweep queues it.
    this.#blocking.disconnect();
    await this.#loop?.catch(() => {});
    const drained = await Promise.race([
      Promise.allSettled([...this.#running.values()]).then(() => true),
      new Promise<false>((r) => setTimeout(() => r(false), timeoutMs).unref()),
    ]);
    for (const t of this.#timers) clearInterval(t);
    return drained;
  }

  /** Moves jobs the lane could not finish to BullMQ (every worker runs it, every few ms). */
  async sweep(): Promise<SweptJob[]> {
    if (this.#sweeping) return [];
    this.#sweeping = true;
    try {
      const swept = await this.#lane.sweep();
      for (const s of swept) {
        // A restart: the run (if any) is fenced by the BullMQ attempt's claim, subscribers reset.
        await this.#deps.queues.add({ ...s.data, attemptBase: Math.max(1, s.data.attemptBase ?? 0) });
        await this.#lane.finish(s.id);
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

  async #popLoop(): Promise<void> {
    const capacity = this.#deps.config.WORKER_CONCURRENCY;
    while (!this.#stopping) {
      const free = Math.min(capacity - this.#deps.cancels.size, capacity - 1 - this.#running.size);
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
        popped = await this.#lane.pop(this.#blocking, Math.min(POP_BATCH, free), 1);
      } catch (e) {
        if (this.#stopping) break;
        this.#deps.log.warn({ err: String(e) }, 'fast lane: pop failed');
        await new Promise((r) => setTimeout(r, 500));
        continue;
      }
      if (popped.length) {
        // The next pop (a write to Redis) goes out behind this run's provider call.
        const sent = afterNextRequestSent(SENT_WAIT_MS);
        for (const entry of popped) this.#begin(entry, sent);
        await sent;
      }
    }
  }

  #begin(entry: string, sent: Promise<void>): void {
    let data: JobData;
    let pushedAt: number;
    try {
      ({ data, pushedAt } = FastLane.parse(entry));
    } catch (e) {
      // Only an ingress writes entries, so this is a bug; the sweep drops its record after the grace.
      this.#deps.log.error({ err: String(e) }, 'fast lane: unreadable entry');
      return;
    }
    const run = this.#run(data, pushedAt, sent).finally(() => {
      this.#running.delete(data.id);
      this.#onBusy(this.#running.size);
      this.#slotFreed?.();
    });
    this.#running.set(data.id, run);
    this.#onBusy(this.#running.size);
  }

  async #run(data: JobData, pushedAt: number, sent: Promise<void>): Promise<void> {
    const deps = this.#deps;
    const id = data.id;
    const lost = new AbortController();
    const fresh = Date.now() + this.#offset - pushedAt < this.#lane.timing.graceMs / 2;
    if (fresh) {
      // A fresh entry cannot have been swept yet (that takes the whole grace): the take goes out
      // once the provider call is on its way, not in front of it. Should it fail all the same, the
      // run stops without writing, and the BullMQ attempt (a restart) owns the job.
      void sent.then(() => {
        this.#take(id).then(
          (ok) => ok || lost.abort(RUN_LOST),
          () => lost.abort(RUN_LOST),
        );
      });
    } else if (!(await this.#take(id).catch(() => false))) {
      return; // old enough to have been swept: it was, and runs on BullMQ
    }
    deps.metrics.inFlight.inc();
    deps.metrics.fastLane.inc({ event: 'run' });
    let outcome: AttemptOutcome | undefined;
    let retry: unknown;
    try {
      outcome = await runAttempt(deps, {
        data,
        attempt: 1,
        canRetry: deps.limits.attempts > 1,
        canWaitOnRateLimit: true,
        restart: false,
        keyIndex: this.#nextKey++ % Math.max(1, deps.provider.config.apiKeys.length),
        workerId: this.#workerId,
        signal: lost.signal,
      });
    } catch (e) {
      retry = e;
    } finally {
      deps.metrics.inFlight.dec();
    }
    if (lost.signal.aborted) {
      deps.metrics.fastLane.inc({ event: 'lost' });
      return; // swept to BullMQ: that run owns the job now
    }
    try {
      if (outcome?.status === 'rate_limited') {
        await deps.queue.rateLimit(outcome.waitMs);
        await this.#handOver(data, outcome.waitMs);
      } else if (retry !== undefined) {
        // The attempt asked for a retry (it wrote its `retrying` frame): BullMQ's backoff applies.
        await this.#handOver(data, 250 + Math.floor(Math.random() * 250));
      }
      await this.#lane.finish(id);
    } catch (e) {
      // The lease lapses and the sweep hands the job to BullMQ.
      deps.log.error({ job: id, err: String(e) }, 'fast lane: could not end a run; its lease will lapse');
    }
  }

  /** Takes of one turn of the event loop go to Redis together. */
  #take(id: string): Promise<boolean> {
    return new Promise((resolve, reject) => {
      if (!this.#takes.length) {
        queueMicrotask(() => {
          const batch = this.#takes;
          this.#takes = [];
          this.#lane.take(batch.map((t) => t.id)).then(
            (oks) => {
              for (const [i, t] of batch.entries()) t.resolve(oks[i] === true);
            },
            (e: unknown) => {
              for (const t of batch) t.reject(e);
            },
          );
        });
      }
      this.#takes.push({ id, resolve, reject });
    });
  }

  async #handOver(data: JobData, delayMs: number): Promise<void> {
    this.#deps.metrics.fastLane.inc({ event: 'handed_over' });
    await this.#deps.queues.add({ ...data, attemptBase: 1 }, undefined, { delay: delayMs });
  }
}
