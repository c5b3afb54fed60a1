import { type FollowHandle, followLog } from '@faregate/queue/follow';
import { z } from 'zod';
import type { IngressDeps } from '../deps.ts';
import { isFinalBatchStatus, publishStatus, readProgress, readStatusRow } from './progress.ts';

/** How often a follower checks the batch record for a status no driver reported (one killed right after it). */
const SYNC_MS = 5_000;

/** What a status event must say for a follower to know it is the last (the rest is the client's). */
const StatusEvent = z.object({ type: z.literal('batch_status'), status: z.string() });

/** A batch progress event with a final status (the last one of its stream). */
function isFinalEvent(raw: string): boolean {
  if (!raw.includes('"type":"batch_status"')) return false;
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    return false;
  }
  const e = StatusEvent.safeParse(parsed);
  return e.success && isFinalBatchStatus(e.data.status);
}

/**
 * Delivers a batch's progress events after `afterSeq` once each and in order (`followLog`, as
 * `followJob` delivers a job's frames). Ends after the final status event. Events the bounded stream
 * no longer has are skipped (the subscribe ack says so).
 */
export async function followProgress(
  deps: IngressDeps,
  batchId: string,
  afterSeq: number,
  onEvent: (raw: string) => void,
): Promise<FollowHandle> {
  const follower = await followLog(
    {
      read: (after) => readProgress(deps, batchId, after),
      isLast: isFinalEvent,
      listen: (cb) => deps.hub.listen(batchId, cb),
      onResync: (cb) => deps.hub.onResync(cb),
    },
    afterSeq,
    (raw) => onEvent(raw),
  );
  // A driver killed between ending a batch and reporting it leaves the final status unreported:
  // report it from the record (statuses only move forward, so a late or repeated report is harmless).
  const sync = setInterval(() => {
    readStatusRow(deps, batchId)
      .then((row) => (row ? publishStatus(deps, row) : undefined))
      .then(follower.catchUp)
      .catch((err: unknown) => deps.log.warn({ err, batch: batchId }, 'batch progress sync failed'));
  }, SYNC_MS);
  sync.unref();
  void follower.ended.then(() => clearInterval(sync));
  return { close: follower.close, ended: follower.ended };
}
