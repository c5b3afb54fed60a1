import { isTerminalRaw } from '@faregate/contracts/frames';
import type { FrameStore } from './frame-store.ts';
import { isStoredNotice, seqOf } from './frame-store.ts';
import type { LiveHub } from './live-hub.ts';

/** Live entries a follower keeps past a gap (at most this many, and bytes) before it leaves the rest to the stream. */
const MAX_EARLY = 10_000;
const MAX_EARLY_BYTES = 8 * 1024 * 1024;

export interface FollowHandle {
  /** Stop following (idempotent). */
  close(): void;
  /** Resolves after the last entry was delivered, or when closed. */
  ended: Promise<void>;
}

/** A sequenced log kept in a Redis stream and published live as it grows (a job's frames, a batch's progress). */
export interface LogSource {
  /** Entries after `afterSeq`, in order, at most 1,000. */
  read(afterSeq: number): Promise<string[]>;
  /** The entry that ends the log. */
  isLast(raw: string): boolean;
  /** Listens to the live channel (each message one entry, or several newline-separated); returns how to stop. */
  listen(onMessage: (message: string) => void): Promise<() => void> | (() => void);
  /** Calls back when live delivery may have missed messages (the subscriber reconnected). */
  onResync(cb: () => void): () => void;
  /** A live entry that is only a notice: the entry itself is read from the stream (too large to publish). */
  notice?(raw: string): boolean;
}

export interface LogFollower extends FollowHandle {
  /** Reads the stream from the cursor again (an outside reason to think entries were missed). */
  catchUp(): void;
}

/**
 * Delivers a log's entries after `afterSeq` exactly once and in order: subscribe first, then read
 * the stream from the cursor, then take live entries in sequence, dropping anything already
 * delivered and filling any gap from the stream. A live entry that comes early (past a gap, or
 * while the stream is being read) is kept until its turn, not dropped for the stream to supply:
 * the stream may not have it yet, or ever (frames handed over in process before their write, see
 * FrameStore's LogCursor). Ends after the last entry. `fresh`: the log has no entries yet (nothing
 * to read first).
 */
export async function followLog(
  source: LogSource,
  afterSeq: number,
  onEntry: (raw: string, seq: number) => void,
  opts: { fresh?: boolean } = {},
): Promise<LogFollower> {
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
    early.clear();
    unlisten?.();
    unresync?.();
    resolveEnded();
  };
  // Live entries past the cursor, by seq, until the cursor reaches them (bounded: past the bound
  // they are left to the stream, as every entry once was).
  const early = new Map<number, string>();
  let earlyBytes = 0;
  const forget = (seq: number) => {
    const raw = early.get(seq);
    if (raw === undefined) return;
    early.delete(seq);
    earlyBytes -= raw.length;
  };
  const deliver = (raw: string) => {
    if (closed) return;
    const seq = seqOf(raw);
    if (seq <= last) return;
    last = seq;
    forget(seq);
    onEntry(raw, seq);
    if (source.isLast(raw)) close();
  };
  // Delivers the kept entries that follow the cursor; forgets those it has passed.
  const drain = () => {
    if (early.size === 0) return;
    for (let next = early.get(last + 1); next !== undefined && !closed; next = early.get(last + 1))
      deliver(next);
    for (const seq of early.keys()) if (seq <= last) forget(seq);
  };
  // Reads the stream from the cursor until nothing new; re-runs if live entries arrived meanwhile.
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
          const batch = await source.read(last);
          for (const raw of batch) deliver(raw);
          drain();
          if (batch.length < 1000) break;
        }
      } while (dirty && !closed);
    } finally {
      running = false;
    }
  };
  const catchUp = () => {
    pump().catch(() => {
      dirty = true;
      // The stream could not be read (Redis failing): what came live in order is delivered all the
      // same (a run's last frames, handed over in process), the rest waits for the next read.
      drain();
    });
  };
  const onLive = (raw: string): boolean => {
    if (closed) return false;
    const seq = seqOf(raw);
    if (seq <= last) return true;
    // An entry too large to publish: only the stream has it (and everything before it, in order).
    if (source.notice?.(raw)) {
      catchUp();
      return false;
    }
    if (seq === last + 1 && !running) {
      deliver(raw);
      drain();
      return true;
    }
    // A gap, or the backlog still being read: kept for its turn, the stream read meanwhile.
    if (!early.has(seq) && early.size < MAX_EARLY && earlyBytes + raw.length <= MAX_EARLY_BYTES) {
      early.set(seq, raw);
      earlyBytes += raw.length;
    }
    catchUp();
    return true;
  };
  unlisten = await source.listen((message) => {
    if (!message.includes('\n')) {
      onLive(message);
      return;
    }
    // Several entries in one message (a batch driver's step): in order, until one must be read.
    for (const raw of message.split('\n')) if (!onLive(raw)) return;
  });
  unresync = source.onResync(catchUp);
  const handle = { close, ended, catchUp };
  if (opts.fresh) return handle;
  try {
    await pump();
  } catch (e) {
    close();
    throw e;
  }
  return handle;
}

/**
 * Delivers a job's frames after `afterSeq` exactly once and in order (`followLog`). Ends after the
 * terminal frame.
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
  const { close, ended } = await followLog(
    {
      read: (after) => store.read(jobId, after),
      isLast: isTerminalRaw,
      listen: (cb) => (opts.reply && hub.replyChannel ? hub.onReply(jobId, cb) : hub.listen(jobId, cb)),
      onResync: (cb) => hub.onResync(cb),
      notice: isStoredNotice,
    },
    afterSeq,
    onFrame,
    opts,
  );
  return { close, ended };
}
