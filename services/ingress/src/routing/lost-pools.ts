import type { Job } from 'bullmq';
import { isJobEnvelope, type JobData, recordTtlSeconds } from '@faregate/contracts/jobs';
import { ROUTE_SKIPS } from '@faregate/contracts/route';
import type { FastLanes } from '@faregate/queue/fast-lane';
import type { FrameStore } from '@faregate/queue/frame-store';
import type { ProviderQueues } from '@faregate/queue/queues';
import { queuedSpeculative } from '@faregate/pool/intake/bullmq';
import { Runner } from '@faregate/pool/runner';
import type { RedisClient } from '@faregate/queue/redis';
import type { Logger } from 'pino';
import type { ModelDirectory } from './directory.ts';

/** Jobs read per page (and fast-lane entries swept per pass) of a lost pool. */
const PAGE = 200;
/**
 * Jobs looked at per lost pool and pass (the rest wait for the next pass): pages are read until this
 * many, so jobs with no live later hop at the front of a queue (they stay) do not hide those behind.
 */
const PASS_MAX = 5_000;

/** BullMQ states of a job that no worker holds (`prioritized`: added with a priority; `delayed`: a retry's backoff). */
const NOT_STARTED = ['wait', 'prioritized', 'delayed'] as const;

export interface LostPoolDeps {
  directory: Pick<ModelDirectory, 'lostPools' | 'isLive'>;
  /** Reads the locks of the jobs the pool's workers were running. */
  redis: Pick<RedisClient, 'exists'>;
  queues: Pick<ProviderQueues, 'get' | 'add' | 'addHop'>;
  fastLanes?: Pick<FastLanes, 'lane'>;
  store: Pick<FrameStore, 'moved' | 'owner'>;
  log: Pick<Logger, 'warn' | 'info'>;
  ttl: Record<'STREAM_TTL_SECONDS' | 'SYNC_TTL_SECONDS', number>;
  /** Counts the jobs moved, by the pool they left and the one they went to. */
  onMoved?: (from: string, to: string) => void;
}

/**
 * Jobs queued for a pool whose every worker is gone or frozen go on to their routes' next live hop.
 *
 * A pool is lost when its record (its liveness, which each of its workers rewrites every
 * LIVENESS_INTERVAL_MS) has lapsed. From then on the router serves its models through their live
 * fallbacks, but the jobs already queued for it would wait for a worker that may never come: an
 * interactive caller until its deadline, an async job or a batch line for good. Each ingress, every
 * few seconds, for each lost pool:
 * 1. sweeps the pool's fast lane, as the pool's own workers do (nobody of the pool does it now):
 *    entries never taken, or taken by a worker that stopped renewing, go to the pool's BullMQ queue;
 * 2. hands each job waiting there (not held by a worker) to its route's first later hop whose pool
 *    is live, the skipped hops named in the job's `attempts` (`pool_lost`, a skip the route shows), as a
 *    fallback would. A job with no such hop stays: it runs when its pool comes back.
 * 3. does the same with each job a worker of the pool was running whose lock lapsed (the worker
 *    stopped renewing it: frozen, or gone), which BullMQ's stalled check, run only by the pool's own
 *    workers, would otherwise leave there until one of them is back. The move marks the run that
 *    stopped (`lostRun`), so the next hop bills its call, as a re-run after a crash does; should the
 *    frozen worker thaw and finish its call, its answer is refused (the job went on) and the call is
 *    billed once (one usage event id per call).
 *
 * Nothing runs twice and nothing is lost, whichever ingresses do this at once and wherever they
 * stop: the hop is added first (its BullMQ id is deterministic, so a second add is nothing), then
 * the job's record is marked `moved` to that hop, then the old copy is removed. An old copy that
 * cannot be removed (a worker of the pool came back and took it in between) is refused at its
 * claim, which finds the job gone on to a later hop (frame-store.claim.lua). Only a first attempt
 * that claims with its first write (`speculative`, attempt.ts) taken in the instant between the add
 * and the remove would run beside the next hop (whose claim, the later, fences its writes).
 */
export class LostPools {
  readonly #deps: LostPoolDeps;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<number> | undefined;

  constructor(deps: LostPoolDeps) {
    this.#deps = deps;
  }

  start(intervalMs: number): void {
    this.#timer = setInterval(() => {
      this.pass().catch((e: unknown) => this.#deps.log.warn({ err: String(e) }, 'lost pool pass failed'));
    }, intervalMs);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await this.#running?.catch(() => {});
  }

  /** One pass over the lost pools; resolves to the number of jobs moved on. */
  pass(): Promise<number> {
    if (!this.#running) this.#running = this.#pass().finally(() => (this.#running = undefined));
    return this.#running;
  }

  async #pass(): Promise<number> {
    let moved = 0;
    for (const pool of this.#deps.directory.lostPools()) {
      const swept = await this.#deps.fastLanes?.lane(pool).requeueSwept(this.#deps.queues, PAGE);
      if (swept?.length)
        this.#deps.log.warn({ pool, jobs: swept.length }, 'lost pool: fast-lane jobs moved to its queue');
      const queue = this.#deps.queues.get(pool);
      let seen = 0;
      for (const state of NOT_STARTED) {
        // A job moved on leaves the list, one that stays does not: read on after those that stayed.
        for (let stayed = 0; seen < PASS_MAX; ) {
          const jobs = (await queue.getJobs(state, stayed, stayed + PAGE - 1)) as (
            | Job<JobData>
            | undefined
          )[];
          for (const job of jobs) {
            if (job && (await this.#moveOn(pool, job))) moved++;
            else stayed++;
          }
          seen += jobs.length;
          if (jobs.length < PAGE) break;
        }
      }
      // Running jobs, read the same way (a worker runs up to WORKER_CONCURRENCY of them).
      for (let stayed = 0, seenActive = 0; seenActive < PASS_MAX; ) {
        const running = (await queue.getJobs('active', stayed, stayed + PAGE - 1)) as (
          | Job<JobData>
          | undefined
        )[];
        for (const job of running) {
          // Held while its worker renews the lock; a lapsed lock is a worker that stopped.
          const held = !job?.id || (await this.#deps.redis.exists(queue.toKey(`${job.id}:lock`))) === 1;
          if (held || !(await this.#moveOn(pool, job, true))) {
            stayed++;
            continue;
          }
          moved++;
          this.#deps.log.warn(
            { job: job.data.id, pool },
            'lost pool: a job its stopped worker was running moved to the next hop',
          );
        }
        seenActive += running.length;
        if (running.length < PAGE) break;
      }
    }
    return moved;
  }

  /** `stopped`: the job was running on a worker that stopped, not waiting. */
  async #moveOn(pool: string, job: Job<JobData>, stopped = false): Promise<boolean> {
    const data: unknown = job.data;
    if (!isJobEnvelope(data)) return false;
    const here = data.plan[data.hop];
    if (!here || here.provider !== pool) return false;
    // The run that stopped, as its worker numbered it (Runner.attemptOf), if it may have called: the
    // next hop bills that call. A queued run claims the job before it calls (only a batch line's first
    // start calls first: queuedSpeculative), so one that stopped before claiming made no call.
    const run = Runner.attemptOf({ data, starts: job.attemptsStarted });
    const mayHaveCalled =
      stopped &&
      (queuedSpeculative(data, job) ||
        (await this.#deps.store.owner(data.id))?.endsWith(`:${data.hop}:${run}`));
    const lostRun = mayHaveCalled ? `${data.hop}:${run}` : undefined;
    const attempts = [...data.attempts];
    let hop = data.hop;
    for (;;) {
      const c = data.plan[hop];
      if (!c) return false;
      if (hop > data.hop && this.#deps.directory.isLive(c.provider)) break;
      attempts.push({
        provider: c.provider,
        model: c.model,
        code: ROUTE_SKIPS.POOL_LOST,
        message: `The ${c.provider} pool has no live worker (gone, or every worker frozen).`,
      });
      hop++;
    }
    const to = data.plan[hop]!.provider;
    await this.#deps.queues.addHop(lostRun ? { ...data, lostRun } : data, hop, attempts);
    await this.#deps.store.moved(data.id, hop, recordTtlSeconds(data, this.#deps.ttl) * 1000);
    // Held by a worker by now (the pool came back): its claim is refused (the job moved on). Left in
    // its list, it is not counted moved (a pass reads on past it, instead of finding it again).
    if (
      !(await job.remove().then(
        () => true,
        () => false,
      ))
    )
      return false;
    this.#deps.onMoved?.(pool, to);
    this.#deps.log.info({ job: data.id, from: pool, to, hop }, 'lost pool: job moved to the next hop');
    return true;
  }
}
