import { type RedisClient, sendEach } from './redis.ts';
import {
  CANCEL_FLAG,
  type Cancel,
  encodeCancel,
  JOB_META_FIELDS,
  JobMeta,
  parseCancel,
  parseJobMeta,
} from '@faregate/contracts/job-control';
import type { JobState } from '@faregate/contracts/jobs';
import type { Keys } from './keys.ts';

/**
 * Reads and writes of the job record (`keys.meta(id)`) and the cancel channel (`keys.cancel`), with
 * the schemas of `@faregate/contracts/job-control`. The record's other writes are the frame store's
 * scripts (claim, append).
 */

/** The job's record, or undefined when there is none. */
export async function readJobMeta(
  redis: RedisClient,
  keys: Keys,
  jobId: string,
): Promise<JobMeta | undefined> {
  return parseJobMeta(await redis.hgetall(keys.meta(jobId)));
}

/**
 * The state of each job (by index; undefined for a job with no record or no readable state). One
 * round trip on a single server; on a Redis Cluster the records are in their jobs' partitions' slots,
 * so one HGET each, sent at once.
 */
export async function readJobStates(
  redis: RedisClient,
  keys: Keys,
  jobIds: readonly string[],
): Promise<(JobState | undefined)[]> {
  if (jobIds.length === 0) return [];
  const res = await sendEach(
    redis,
    jobIds.map((id) => ['hget', keys.meta(id), JOB_META_FIELDS.state] as const),
  );
  return jobIds.map((_, i) => {
    const v = res[i];
    return typeof v === 'string' ? JobMeta.shape.state.parse(v) : undefined;
  });
}

/**
 * Asks whichever worker runs the job to stop: flags the record (a job not yet started is ended when
 * picked up) and publishes the id on the cancel channel (a running attempt aborts its call; with
 * `unstarted`, one whose provider call is under way finishes, and only a new attempt is refused).
 * `ttlMs` bounds the record's life if it does not exist yet (a request not picked up).
 */
export async function requestCancel(
  redis: RedisClient,
  keys: Keys,
  jobId: string,
  ttlMs: number,
  opts: { unstarted?: boolean } = {},
): Promise<void> {
  const meta = keys.meta(jobId);
  await redis
    .multi()
    .hset(meta, JOB_META_FIELDS.cancel, CANCEL_FLAG)
    .pexpire(meta, ttlMs)
    .publish(keys.cancel, encodeCancel(jobId, opts.unstarted))
    .exec();
}

/**
 * Calls `onCancel` with each cancel published on the cancel channel. `sub` is a connection in
 * subscriber mode (it may serve other channels too). Returns an unsubscribe function.
 */
export async function listenCancels(
  sub: RedisClient,
  keys: Keys,
  onCancel: (cancel: Cancel) => void,
): Promise<() => Promise<void>> {
  const onMessage = (channel: string, message: string) => {
    if (channel !== keys.cancel) return;
    const cancel = parseCancel(message);
    if (cancel) onCancel(cancel);
  };
  sub.on('message', onMessage);
  await sub.subscribe(keys.cancel);
  return async () => {
    sub.off('message', onMessage);
    await sub.unsubscribe(keys.cancel);
  };
}
