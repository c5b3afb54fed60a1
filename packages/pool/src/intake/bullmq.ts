import { DelayedError, type Job, UnrecoverableError, Worker } from 'bullmq';
import type { RedisClient } from '@faregate/queue/redis';
import type { Logger } from 'pino';
import { zeroUsage } from '@faregate/contracts/chat';
import { GatewayError } from '@faregate/contracts/errors';
import { isTerminalRaw } from '@faregate/contracts/frames';
import { isBatchLine, isJobEnvelope, JobData, recordTtlSeconds } from '@faregate/contracts/jobs';
import { usageEventId } from '@faregate/contracts/usage';
import type { AttemptOutcome } from '../attempt.ts';
import type { WorkerDeps } from '../deps.ts';
import type { Runner } from '../runner.ts';

/**
 * A batch line's first start calls without claiming first, as a fresh lane run does: nothing can
 * own it yet (a re-run is a later start; a line queued again after its first run ended calls again
 * and is refused at its write: see the README's "first attempt claims with its first write"), and
 * its batch's cancel lets lines in flight end (OpenAI's `cancelling`). A cancel this process heard of still claims first
 * (attempt.ts), so a line cancelled while queued ends without a call. Every other queued job claims
 * first: it may have waited, been cancelled, or be a re-run.
 */
export const queuedSpeculative = (
  data: JobData,
  job: Pick<Job, 'attemptsStarted' | 'stalledCounter'>,
): boolean => isBatchLine(data) && job.attemptsStarted === 1 && job.stalledCounter === 0;

/**
 * The BullMQ intake of one provider pool: how a queued job arrives, nothing else. Stalled-job
 * defaults: a lock of 30 s renewed every 15 s, checked every 15 s, so a job of a killed process is
 * picked up again within ~30–45 s (an LLM call only needs a free event loop to keep its lock); a job
 * may stall twice before it is failed (and then the safety net below still ends it for the caller).
 *
 * A queued job claims before it calls, but a batch line's first start (`queuedSpeculative`).
 */
export function createQueueIntake(
  deps: WorkerDeps,
  runner: Runner,
  connection: RedisClient,
  workerId: string,
): Worker<unknown, AttemptOutcome> {
  const worker = new Worker<unknown, AttemptOutcome>(
    deps.keys.queue(deps.provider.config.id),
    async (job, token) => {
      // The envelope only, as the lane checks its entries (see isJobEnvelope): the request inside was
      // validated by the ingress that wrote it. Anything else is refused with the schema's reason.
      let data: JobData;
      if (isJobEnvelope(job.data)) data = job.data;
      else {
        const parsed = JobData.safeParse(job.data);
        if (!parsed.success) throw new UnrecoverableError(`unreadable job data: ${parsed.error.message}`);
        data = parsed.data;
      }
      const outcome = await runner.run({
        data,
        via: 'queue',
        starts: job.attemptsStarted,
        made: job.attemptsMade,
        stalled: job.stalledCounter > 0,
        speculative: queuedSpeculative(data, job),
      });
      if (outcome.status === 'wait' && outcome.jobOnly) {
        // This job alone waits (its provider's circuit is open): delayed, its attempts kept.
        await job.moveToDelayed(Date.now() + outcome.waitMs, token);
        throw new DelayedError();
      }
      if (outcome.status === 'wait') {
        // The whole pool waits (every process); the job goes back to wait and keeps its attempts.
        await deps.queue.rateLimit(outcome.waitMs);
        throw Worker.RateLimitError();
      }
      if (outcome.status === 'retry') throw outcome.error;
      return outcome;
    },
    {
      connection,
      prefix: deps.keys.prefix,
      concurrency: deps.config.WORKER_CONCURRENCY,
      autorun: false,
      lockDuration: deps.config.WORKER_LOCK_MS,
      stalledInterval: deps.config.WORKER_STALLED_INTERVAL_MS,
      maxStalledCount: 2,
      name: workerId,
      // Enables the pool-wide pause (queue.rateLimit); our own limiter does the real pacing.
      limiter: { max: 1_000_000, duration: 1_000 },
    },
  );
  // BullMQ fetches only for the slots the lane leaves.
  runner.onChange(() => {
    worker.concurrency = Math.max(1, deps.config.WORKER_CONCURRENCY - runner.laneBusy);
  });
  worker.on('failed', (job, err) => {
    if (job && job.finishedOn !== undefined) void endAbandoned(deps, job, err);
  });
  reportWorkerErrors(worker, deps.log);
  return worker;
}

/**
 * Safety net: a job BullMQ failed for good outside our own handling (it stalled too often, Redis
 * broke during the last attempt, or its data did not parse) still ends for the caller with an error
 * frame and a final (empty) usage event that releases the admission hold. Unfenced: no attempt owns
 * it anymore.
 */
async function endAbandoned(deps: WorkerDeps, job: Job<unknown>, cause: Error): Promise<void> {
  const parsed = JobData.safeParse(job.data);
  if (!parsed.success) {
    deps.log.error({ job: job.id, err: parsed.error.message }, 'unreadable job data; dropped');
    return;
  }
  const data = parsed.data;
  const candidate = data.plan[data.hop];
  const err = new GatewayError({
    code: 'upstream_error',
    message: 'the request could not be completed',
    retryable: true,
  });
  try {
    const last = await deps.store.last(data.id);
    if (last && isTerminalRaw(last)) return;
    const ttlMs = recordTtlSeconds(data, deps.config) * 1000;
    await deps.store.append(data.id, [{ type: 'error', status: err.status, error: err.toJSON() }], {
      owner: '',
      ttlMs,
      replyTo: data.replyTo,
      state: 'failed',
      usage: {
        v: 1,
        id: usageEventId(data.id, data.hop, 1_000 + job.attemptsStarted),
        requestId: data.id,
        account: data.account,
        key: data.key,
        provider: candidate?.provider ?? 'unknown',
        model: candidate?.model ?? 'unknown',
        hop: data.hop,
        attempt: 1_000 + job.attemptsStarted,
        ...zeroUsage(),
        outcome: 'failed',
        final: true,
        ...(data.hold ? { hold: data.hold } : {}),
        at: Date.now(),
      },
    });
    deps.log.error(
      { job: job.id, cause: cause.message },
      'job failed outside its handler; ended it for the caller',
    );
  } catch (e) {
    deps.log.error({ job: job.id, err: String(e) }, 'could not end an abandoned job');
  }
}

/**
 * A BullMQ worker's errors, logged. A job whose lock could not be renewed (this process was frozen
 * or cut off from Redis past WORKER_LOCK_MS) may run elsewhere now; its attempt runs on, and its
 * writes are refused if so. BullMQ reports that as an error per job at every renewal until the job
 * ends (a thawed worker holding 256 jobs logged thousands a minute): said once per job here.
 */
export function reportWorkerErrors(worker: Pick<Worker, 'on'>, log: Pick<Logger, 'warn' | 'error'>): void {
  const lostLocks = new Set<string>();
  worker.on('lockRenewalFailed', (ids: string[]) => {
    const fresh = ids.filter((id) => !lostLocks.has(id));
    if (lostLocks.size + fresh.length > 10_000) lostLocks.clear();
    for (const id of fresh) lostLocks.add(id);
    if (fresh.length > 0)
      log.warn(
        { jobs: fresh.length, first: fresh.slice(0, 5) },
        'lost the lock of running jobs (frozen or cut off from Redis past WORKER_LOCK_MS): they may run elsewhere',
      );
  });
  worker.on('error', (err) => {
    if (err.message.startsWith('could not renew lock for job ')) return;
    // Finishing a job that was taken from this worker while it was stopped (moved on to another
    // hop, or re-run elsewhere): BullMQ no longer has it as ours, and its outcome here is dropped.
    if (/^Missing (key|lock) for job /.test(err.message))
      log.warn(
        { err: err.message },
        'a job taken from this worker while it was stopped: its outcome here is dropped',
      );
    else log.error({ err: err.message }, 'worker error');
  });
}
