import { Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import { GatewayError } from '@faregate/contracts/errors';
import type { JobData } from '@faregate/contracts/jobs';
import { zeroUsage } from '@faregate/contracts/chat';
import { usageEventId } from '@faregate/contracts/usage';
import { runAttempt, type AttemptOutcome } from './attempt.ts';
import { estimateTokens } from './limits/estimate.ts';
import type { Admission } from './limits/limiter.ts';
import type { WorkerDeps } from './deps.ts';

/**
 * The BullMQ worker of one provider pool. Stalled-job defaults: a lock of 30 s renewed every 15 s,
 * checked every 15 s, so a job of a killed process is picked up again within ~30–45 s (an LLM call
 * only needs a free event loop to keep its lock); a job may stall twice before it is failed (and
 * then the safety net below still ends it for the caller).
 */
export function createPool(
  deps: WorkerDeps,
  connection: Redis,
  workerId: string,
): Worker<JobData, AttemptOutcome> {
  let nextKey = 0;
  const worker = new Worker<JobData, AttemptOutcome>(
    deps.keys.queue(deps.provider.config.id),
    async (job) => {
      const data = job.data;
      const { rpm, tpm } = deps.limits;
      // Attempts made on the fast lane before this job was queued count first.
      const base = data.attemptBase ?? 0;
      const starts = Math.max(1, job.attemptsStarted) + base;
      // Admission against the pool's shared limits comes before anything is written for the attempt:
      // a job that must wait goes back to the queue untouched, and without using an attempt.
      let admission: Extract<Admission, { ok: true }> | undefined;
      let forcedError: GatewayError | undefined;
      let keyIndex = nextKey++ % Math.max(1, deps.provider.config.apiKeys.length);
      if (rpm || tpm) {
        const tokens = tpm ? estimateTokens(data.request, 1024) : 0;
        const a = await deps.limiter.acquire(tokens);
        if (a.ok) {
          admission = a;
          keyIndex = a.keyIndex;
        } else if (starts < deps.config.WORKER_MAX_STARTS && Date.now() + a.waitMs < data.deadline) {
          deps.metrics.rateLimitWaits.inc({ reason: 'limit' });
          await deps.queue.rateLimit(a.waitMs);
          throw Worker.RateLimitError();
        } else {
          forcedError = new GatewayError({
            code: 'rate_limit_exceeded',
            message: `${deps.provider.config.id} stayed rate limited past the request's patience`,
          });
        }
      }
      deps.metrics.inFlight.inc();
      try {
        const outcome = await runAttempt(deps, {
          data,
          attempt: starts,
          canRetry: job.attemptsMade + base + 1 < deps.limits.attempts,
          canWaitOnRateLimit: starts < deps.config.WORKER_MAX_STARTS,
          restart: job.attemptsMade > 0 || data.hop > 0 || job.stalledCounter > 0 || base > 0,
          keyIndex,
          admission,
          forcedError,
          workerId,
        });
        if (outcome.status === 'rate_limited') {
          // The provider said 429: the whole pool waits (every process), the job keeps its attempts.
          await deps.queue.rateLimit(outcome.waitMs);
          throw Worker.RateLimitError();
        }
        return outcome;
      } finally {
        deps.metrics.inFlight.dec();
      }
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
  worker.on('failed', (job, err) => {
    if (job && isTerminal(job)) void endAbandoned(deps, job, err);
  });
  worker.on('error', (err) => deps.log.error({ err: err.message }, 'worker error'));
  return worker;
}

const isTerminal = (job: Job) => job.finishedOn !== undefined;

/**
 * Safety net: a job BullMQ failed for good outside our own handling (it stalled too often, or
 * Redis broke during the last attempt) still ends for the caller with an error frame and a final
 * (empty) usage event that releases the admission hold. Unfenced: no attempt owns it anymore.
 */
async function endAbandoned(deps: WorkerDeps, job: Job<JobData>, cause: Error): Promise<void> {
  const data = job.data;
  const candidate = data.plan[data.hop];
  const err = new GatewayError({
    code: 'upstream_error',
    message: 'the request could not be completed',
    retryable: true,
  });
  try {
    const last = await deps.store.last(data.id);
    if (last && (last.includes('"type":"done"') || last.includes('"type":"error"'))) return;
    const ttlMs = (data.deltas ? deps.config.STREAM_TTL_SECONDS : deps.config.SYNC_TTL_SECONDS) * 1000;
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
