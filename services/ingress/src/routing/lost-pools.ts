import type { Job } from 'bullmq';
import { isJobEnvelope, type JobData, recordTtlSeconds } from '@faregate/contracts/jobs';
import { ROUTE_SKIPS } from '@faregate/contracts/route';
import type { FastLanes } from '@faregate/queue/fast-lane';
import type { FrameStore } from '@faregate/queue/frame-store';
import type { ProviderQueues } from '@faregate/queue/queues';
import type { Logger } from 'pino';
import type { ModelDirectory } from './directory.ts';

/** Jobs looked at per lost pool and pass (a pass every LOST_POOL_SWEEP_MS; the rest wait for the next). */
const PASS_MAX = 200;

/** BullMQ states of a job that no worker holds (`prioritized`: added with a priority; `delayed`: a retry's backoff). */
const NOT_STARTED = ['wait', 'prioritized', 'delayed'] as const;

export interface LostPoolDeps {
  directory: Pick<ModelDirectory, 'lostPools' | 'isLive'>;
  queues: Pick<ProviderQueues, 'get' | 'add' | 'addHop'>;
  fastLanes?: Pick<FastLanes, 'lane'>;
  store: Pick<FrameStore, 'moved'>;
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
      const swept = await this.#deps.fastLanes?.lane(pool).requeueSwept(this.#deps.queues, PASS_MAX);
      if (swept?.length)
        this.#deps.log.warn({ pool, jobs: swept.length }, 'lost pool: fast-lane jobs moved to its queue');
      const jobs = (await this.#deps.queues.get(pool).getJobs([...NOT_STARTED], 0, PASS_MAX - 1)) as (
        | Job<JobData>
        | undefined
      )[];
      for (const job of jobs) if (job && (await this.#moveOn(pool, job))) moved++;
    }
    return moved;
  }

  async #moveOn(pool: string, job: Job<JobData>): Promise<boolean> {
    const data: unknown = job.data;
    if (!isJobEnvelope(data)) return false;
    const here = data.plan[data.hop];
    if (!here || here.provider !== pool) return false;
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
    await this.#deps.queues.addHop(data, hop, attempts);
    await this.#deps.store.moved(data.id, hop, recordTtlSeconds(data, this.#deps.ttl) * 1000);
    // Held by a worker by now (the pool came back): its claim is refused (the job moved on).
    await job.remove().catch(() => {});
    this.#deps.onMoved?.(pool, to);
    this.#deps.log.info({ job: data.id, from: pool, to, hop }, 'lost pool: job moved to the next hop');
    return true;
  }
}
