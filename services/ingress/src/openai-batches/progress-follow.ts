import { seqOf } from '@faregate/queue/frame-store';
import type { FollowHandle } from '@faregate/queue/follow';
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
 * Delivers a batch's progress events after `afterSeq` once each and in order, as `followJob` does
 * for a job's frames: listen to the live channel first, then read the stream from the cursor, take
 * live events in sequence and fill any gap from the stream. Ends after the final status event.
 * Events the bounded stream no longer has are skipped (the subscribe ack says so).
 */
export async function followProgress(
  deps: IngressDeps,
  batchId: string,
  afterSeq: number,
  onEvent: (raw: string) => void,
): Promise<FollowHandle> {
  let last = afterSeq;
  let closed = false;
  let running = false;
  let dirty = false;
  let unlisten: (() => void) | undefined;
  let unresync: (() => void) | undefined;
  let sync: NodeJS.Timeout | undefined;
  let resolveEnded!: () => void;
  const ended = new Promise<void>((r) => {
    resolveEnded = r;
  });
  const close = () => {
    if (closed) return;
    closed = true;
    unlisten?.();
    unresync?.();
    clearInterval(sync);
    resolveEnded();
  };
  const deliver = (raw: string) => {
    if (closed) return;
    const seq = seqOf(raw);
    if (seq <= last) return;
    last = seq;
    onEvent(raw);
    if (isFinalEvent(raw)) close();
  };
  const pump = async (): Promise<void> => {
    if (running) {
      dirty = true;
      return;
    }
    running = true;
    try {
      do {
        dirty = false;
        for (;;) {
          if (closed) return;
          const events = await readProgress(deps, batchId, last);
          for (const raw of events) deliver(raw);
          if (events.length < 1000) break;
        }
      } while (dirty && !closed);
    } finally {
      running = false;
    }
  };
  const repump = () => {
    pump().catch(() => {
      dirty = true;
    });
  };
  const onLive = (message: string) => {
    // A driver step's events come as one message, newline-separated.
    for (const raw of message.split('\n')) {
      if (closed) return;
      const seq = seqOf(raw);
      if (seq <= last) continue;
      if (seq === last + 1 && !running) deliver(raw);
      else return repump();
    }
  };
  unlisten = await deps.hub.listen(batchId, onLive);
  unresync = deps.hub.onResync(repump);
  // A driver killed between ending a batch and reporting it leaves the final status unreported:
  // report it from the record (statuses only move forward, so a late or repeated report is harmless).
  sync = setInterval(() => {
    readStatusRow(deps, batchId)
      .then((row) => (row ? publishStatus(deps, row) : undefined))
      .then(repump)
      .catch((err: unknown) => deps.log.warn({ err, batch: batchId }, 'batch progress sync failed'));
  }, SYNC_MS);
  sync.unref();
  try {
    await pump();
  } catch (e) {
    close();
    throw e;
  }
  return { close, ended };
}
