import { Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import { GatewayError } from '@switchyard/contracts/errors';
import type { JobData } from '@switchyard/contracts/jobs';
import { zeroUsage } from '@switchyard/contracts/chat';
import { usageEventId } from '@switchyard/contracts/usage';
import { runAttempt, type AttemptOutcome } from './attempt.ts';
import type { WorkerDeps } from './deps.ts';

/**
 * The BullMQ worker of one provider pool. Stalled-job settings: a lock of 30 s renewed every 15 s,
 * checked every 15 s, so a job of a killed process is picked up again within ~30–45 s; a job may
 * stall twice before it is failed (and then the safety net below still ends it for the caller).
 */
export function createPool(deps: WorkerDeps, connection: Redis, workerId: string): Worker<JobData, AttemptOutcome> {
  const worker = new Worker<JobData, AttemptOutcome>(
    deps.keys.queue(deps.provider.config.id),
    async (job) => {
      deps.metrics.inFlight.inc();
      try {
        const attempts = job.opts.attempts ?? 1;
        return await runAttempt(deps, {
          data: job.data,
          attempt: Math.max(1, job.attemptsStarted),
          canRetry: job.attemptsMade + 1 < attempts,
          workerId,
        });
      } finally {
        deps.metrics.inFlight.dec();
      }
    },
    {
      connection,
      prefix: deps.keys.prefix,
      concurrency: deps.config.WORKER_CONCURRENCY,
      autorun: false,
      lockDuration: 30_000,
      stalledInterval: 15_000,
      maxStalledCount: 2,
      name: workerId,
    },
  );
  worker.on('failed', (job, err) => {
    if (job && isTerminal(job)) void endAbandoned(deps, job, err);
  });
  worker.on('error', (err) => deps.log.error({ err: err.message }, 'worker error'));
  return worker;
}

const isTerminal = (job: Job) => job.finishedOn !== undefined || job.attemptsMade >= (job.opts.attempts ?? 1);

/**
 * Safety net: a job BullMQ failed for good outside our own handling (it stalled too often, or
 * Redis broke during the last attempt) still ends for the caller with an error frame and a final
 * (empty) usage event that releases the admission hold. Unfenced: no attempt owns it anymore.
 */
async function endAbandoned(deps: WorkerDeps, job: Job<JobData>, cause: Error): Promise<void> {
  const data = job.data;
  const candidate = data.plan[data.hop];
  const err = new GatewayError({ code: 'upstream_error', message: 'the request could not be completed', retryable: true });
  try {
    const last = await deps.store.last(data.id);
    if (last && (last.includes('"type":"done"') || last.includes('"type":"error"'))) return;
    const ttlMs = (data.deltas ? deps.config.STREAM_TTL_SECONDS : deps.config.SYNC_TTL_SECONDS) * 1000;
    await deps.store.append(data.id, [{ type: 'error', status: err.status, error: err.toJSON() }], {
      owner: '',
      ttlMs,
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
        at: Date.now(),
      },
    });
    deps.log.error({ job: job.id, cause: cause.message }, 'job failed outside its handler; ended it for the caller');
  } catch (e) {
    deps.log.error({ job: job.id, err: String(e) }, 'could not end an abandoned job');
  }
}
