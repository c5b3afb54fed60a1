import { isTerminalRaw } from '@faregate/contracts/frames';
import type { FrameStore } from './frame-store.ts';
import { isStoredNotice, seqOf } from './frame-store.ts';
import type { LiveHub } from './live-hub.ts';

export interface FollowHandle {
  /** Stop following (idempotent). */
  close(): void;
  /** Resolves after the terminal frame was delivered, or when closed. */
  ended: Promise<void>;
}

/**
 * Delivers a job's frames after `afterSeq` exactly once and in order: subscribe first, then read
 * the stream from the cursor, then forward live frames, dropping anything already delivered and
 * filling any gap from the stream. Ends after the terminal frame.
 */
export async function followJob(
  hub: LiveHub,
  store: FrameStore,
  jobId: string,
  afterSeq: number,
  onFrame: (raw: string, seq: number) => void,
  /**
   * `fresh`: the job is not queued yet, so there is no backlog to read. `reply`: its frames come on
   * this process's reply channel (it was submitted here with `replyTo`): no per-job subscription.
   */
  opts: { fresh?: boolean; reply?: boolean } = {},
): Promise<FollowHandle> {
  let last = afterSeq;
  let closed = false;
  let running = false;
  let dirty = false;
  let unlisten: (() => void) | undefined;
  let unresync: (() => void) | undefined;
  let resolveEnded!: () => void;
  const ended = new Promise<void>((r) => {
    resolveEnded = r;
  });
  const close = () => {
    if (closed) return;
    closed = true;
    unlisten?.();
    unresync?.();
    resolveEnded();
  };
  const deliver = (raw: string) => {
    if (closed) return;
    const seq = seqOf(raw);
    if (seq <= last) return;
    last = seq;
    onFrame(raw, seq);
    if (isTerminalRaw(raw)) close();
  };
  // Reads the stream from the cursor until nothing new; re-runs if live frames arrived meanwhile.
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
          const batch = await store.read(jobId, last);
          for (const raw of batch) deliver(raw);
          if (batch.length < 1000) break;
        }
      } while (dirty && !closed);
    } finally {
      running = false;
    }
  };
  const onLive = (raw: string) => {
    if (closed) return;
    const seq = seqOf(raw);
    if (seq <= last) return;
    if (seq === last + 1 && !running && !isStoredNotice(raw)) {
      deliver(raw);
      return;
    }
    // A gap, the backlog still being read, or a frame too large to publish: the stream has
    // everything, in order.
    pump().catch(() => {
      dirty = true;
    });
  };
  unlisten = opts.reply && hub.replyChannel ? hub.onReply(jobId, onLive) : await hub.listen(jobId, onLive);
  unresync = hub.onResync(() => {
    pump().catch(() => {
      dirty = true;
    });
  });
  // A job not queued yet has no frames: skip the backlog read.
  if (opts.fresh) return { close, ended };
  try {
    await pump();
  } catch (e) {
    close();
    throw e;
  }
  return { close, ended };
}
