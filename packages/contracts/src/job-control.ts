import { z } from 'zod';
import { JobState } from './jobs.ts';

/**
 * The job record and the cancel protocol, shared by the ingress and the workers through Redis (the
 * read/write functions are in packages/queue/src/job-control.ts).
 *
 * The record is the per-job hash `keys.meta(id)`. Its writers: the frame store's scripts (`claim`
 * writes owner, state, account, model, created; `append` writes state, and the record or a claim
 * with it), and `requestCancel` (`cancel`). Its readers parse it with `JobMeta`: a hash holds
 * strings, and a field that does not read is treated as absent rather than trusted.
 */

const epochMs = z.string().regex(/^\d+$/).transform(Number).optional().catch(undefined);

export const JobMeta = z.object({
  /** The account that submitted the job: every lookup by a tenant checks it. */
  account: z.string().min(1).optional().catch(undefined),
  /** The model the caller asked for (as it was asked). */
  model: z.string().optional().catch(undefined),
  /** Epoch ms of the submission. */
  created: epochMs,
  state: JobState.optional().catch(undefined),
  /** Fencing token of the attempt that owns the job (frame-store `claim`). */
  owner: z.string().optional().catch(undefined),
  /** A cancel was requested: a job not yet started is ended when picked up. Stored as `'1'`. */
  cancel: z
    .literal('1')
    .optional()
    .catch(undefined)
    .transform((v) => v === '1'),
});
export type JobMeta = z.infer<typeof JobMeta>;

/** The hash fields of `JobMeta`, for writers (HSET) and scripts. */
export const JOB_META_FIELDS = JobMeta.keyof().enum;

/** The stored value of the `cancel` field. */
export const CANCEL_FLAG = '1';

/** A record read with HGETALL; `undefined` when there is none (an empty hash: no such job, or expired). */
export function parseJobMeta(hash: Record<string, string>): JobMeta | undefined {
  if (Object.keys(hash).length === 0) return undefined;
  return JobMeta.parse(hash);
}

/** States after which nothing more happens to a job (its stream holds the terminal frame). */
export const FinalJobState = JobState.extract(['completed', 'failed', 'cancelled']);
export type FinalJobState = z.infer<typeof FinalJobState>;
export const isFinalState = (s: JobState | undefined): s is FinalJobState =>
  FinalJobState.safeParse(s).success;

/**
 * The message on the cancel channel (`keys.cancel`), as plain text (one channel for every job): the
 * id of the job to stop (the worker running it aborts its provider call), or `<id> unstarted`: the
 * job must not start, but an attempt whose call is under way finishes (a batch's cancel, which
 * keeps what lines in flight answer, as OpenAI's and Anthropic's do).
 */
export const CancelMessage = z.string().min(1).max(200);
export type CancelMessage = z.infer<typeof CancelMessage>;

export interface Cancel {
  jobId: string;
  /** Only a start is refused: a call under way goes on. */
  unstarted: boolean;
}

export const encodeCancel = (jobId: string, unstarted = false): string =>
  CancelMessage.parse(unstarted ? `${jobId} unstarted` : jobId);

/** A cancel channel message, or undefined when it is not one. */
export function parseCancel(raw: string): Cancel | undefined {
  const m = CancelMessage.safeParse(raw).success ? /^(\S+)( unstarted)?$/.exec(raw) : null;
  return m?.[1] ? { jobId: m[1], unstarted: m[2] !== undefined } : undefined;
}
