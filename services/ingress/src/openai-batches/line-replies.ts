import { isTerminalRaw } from '@faregate/contracts/frames';
import type { LiveHub } from '@faregate/queue/live-hub';

/** How often a batch's lines in flight are read from Redis all the same (frames missed, takeovers). */
export const SWEEP_MS = 1_000;
/** A batch not stepped here for this long is forgotten (another process holds it, or it ended). */
const IDLE_MS = 60_000;

interface BatchLines {
  /** Lines fed here and not seen to end: job id → line, and how to stop listening. */
  open: Map<string, { line: number; stop: () => void }>;
  /** Terminal frames that arrived for them (job id → line and raw frame). */
  arrived: Map<string, { line: number; raw: string }>;
  /** When the lines in flight were last read from Redis and Postgres (a full collect). */
  sweptAt: number;
  usedAt: number;
}

/**
 * How a batch driver learns that its lines ended without reading each one's state every step: an
 * OpenAI batch line's job is submitted with this process's reply channel (`replyTo`), so the worker
 * publishes its terminal frame here too, in the script that ends the job. The driver takes the
 * frames that arrived each step: no Redis command per line.
 *
 * Pub/sub keeps nothing: a frame published while the subscriber was reconnecting, or to a process
 * that no longer holds the batch (a takeover), never arrives. So this is only the fast path: the
 * driver still reads the state of every line in flight every SWEEP_MS, and whenever it is about to
 * conclude that none is open (before finalizing). A line is ended once whichever path sees it first
 * (recording only moves lines still `submitted`).
 */
export class LineReplies {
  readonly #hub: Pick<LiveHub, 'onReply'>;
  readonly #onArrive: ((batchId: string, waiting: number) => void) | undefined;
  readonly #batches = new Map<string, BatchLines>();

  /** `onArrive`: a line's frame arrived; `waiting`, how many of the batch's wait to be taken. */
  constructor(hub: Pick<LiveHub, 'onReply'>, onArrive?: (batchId: string, waiting: number) => void) {
    this.#hub = hub;
    this.#onArrive = onArrive;
  }

  #lines(batchId: string): BatchLines {
    let b = this.#batches.get(batchId);
    if (!b) {
      // Never swept: the first step reads every line in flight.
      b = { open: new Map(), arrived: new Map(), sweptAt: 0, usedAt: Date.now() };
      this.#batches.set(batchId, b);
    }
    return b;
  }

  /** Listens for a line's terminal frame; call before its job is queued (nothing is missed). */
  watch(batchId: string, jobId: string, line: number): void {
    const b = this.#lines(batchId);
    if (b.open.has(jobId)) return;
    const stop = this.#hub.onReply(jobId, (raw) => {
      if (!isTerminalRaw(raw)) return;
      stop();
      b.open.delete(jobId);
      b.arrived.set(jobId, { line, raw });
      this.#onArrive?.(batchId, b.arrived.size);
    });
    b.open.set(jobId, { line, stop });
  }

  /** Stops listening for a line (its submission failed, or it goes back to pending). */
  unwatch(batchId: string, jobId: string): void {
    const b = this.#batches.get(batchId);
    const o = b?.open.get(jobId);
    if (!b || !o) return;
    o.stop();
    b.open.delete(jobId);
  }

  /**
   * The frames arrived for a batch's lines (taken: the caller records them), or undefined when the
   * batch needs a full collect: never swept here, the last sweep SWEEP_MS ago, or no line left open
   * as far as arrivals tell (the driver is about to conclude the batch has none).
   */
  take(batchId: string, now = Date.now()): Map<string, { line: number; raw: string }> | undefined {
    const b = this.#batches.get(batchId);
    if (!b || b.sweptAt === 0 || now - b.sweptAt >= SWEEP_MS || b.open.size === 0) return undefined;
    b.usedAt = now;
    const arrived = b.arrived;
    b.arrived = new Map();
    return arrived;
  }

  /** Lines open as the arrivals tell (after `take`). */
  openCount(batchId: string): number {
    return this.#batches.get(batchId)?.open.size ?? 0;
  }

  /**
   * After a full collect: these lines are open, every other line fed is ended (recorded). Lines open
   * but not watched (fed by another process, or before a restart) are watched from now on; frames
   * arrived for lines no longer open are dropped.
   */
  swept(batchId: string, open: readonly { line: number; job: string }[], now = Date.now()): void {
    const b = this.#lines(batchId);
    const still = new Set(open.map((o) => o.job));
    for (const [job, o] of b.open)
      if (!still.has(job)) {
        o.stop();
        b.open.delete(job);
      }
    for (const job of b.arrived.keys()) if (!still.has(job)) b.arrived.delete(job);
    for (const o of open) if (!b.arrived.has(o.job)) this.watch(batchId, o.job, o.line);
    b.sweptAt = now;
    b.usedAt = now;
  }

  /** Forgets a batch (ended, or no longer held here). */
  drop(batchId: string): void {
    const b = this.#batches.get(batchId);
    if (!b) return;
    for (const o of b.open.values()) o.stop();
    this.#batches.delete(batchId);
  }

  /** Forgets batches not stepped here for a while (another process took them over, or they ended). */
  dropIdle(now = Date.now()): void {
    for (const [id, b] of this.#batches) if (now - b.usedAt > IDLE_MS) this.drop(id);
  }
}
