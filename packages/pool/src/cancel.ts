import type { RedisClient } from '@faregate/queue/redis';
import { GatewayError } from '@faregate/contracts/errors';
import { listenCancels } from '@faregate/queue/job-control';
import type { Keys } from '@faregate/queue/keys';

/** How long a cancel heard is remembered, and at most how many (memory stays bounded). */
const RECENT_CANCEL_MS = 10 * 60_000;
const RECENT_CANCELS = 100_000;

/**
 * Cancellation across processes: any ingress publishes a job id on one channel; the worker that
 * runs the job aborts its provider call. (BullMQ's cancelJob only reaches the local worker.)
 */
export class CancelRegistry {
  readonly #running = new Map<string, AbortController>();
  /** Jobs cancelled recently (running here or not), oldest first, with when the entry lapses (ms). */
  readonly #recent = new Map<string, number>();

  register(jobId: string, ac: AbortController): () => void {
    this.#running.set(jobId, ac);
    return () => {
      if (this.#running.get(jobId) === ac) this.#running.delete(jobId);
    };
  }

  cancel(jobId: string, reason = 'cancelled by the caller'): boolean {
    this.#remember(jobId);
    const ac = this.#running.get(jobId);
    if (!ac) return false;
    ac.abort(new GatewayError({ code: 'cancelled', message: reason }));
    return true;
  }

  /**
   * A cancel of the job's start only (a batch's cancel): an attempt under way here goes on; a later
   * start claims first, and so finds the record's cancel flag.
   */
  refuseStart(jobId: string): void {
    this.#remember(jobId);
  }

  /**
   * Whether this process heard of a cancel of the job in the last RECENT_CANCEL_MS (the cancel of a
   * job still queued: only its claim would find the flag, and a speculative start has none).
   */
  cancelledRecently(jobId: string): boolean {
    const until = this.#recent.get(jobId);
    return until !== undefined && until > Date.now();
  }

  #remember(jobId: string): void {
    const now = Date.now();
    this.#recent.delete(jobId);
    this.#recent.set(jobId, now + RECENT_CANCEL_MS);
    // Oldest first (insertion order): drop the lapsed, and the oldest past the bound.
    for (const [id, until] of this.#recent) {
      if (until > now && this.#recent.size <= RECENT_CANCELS) break;
      this.#recent.delete(id);
    }
  }

  get size(): number {
    return this.#running.size;
  }

  /** Follows the cancel channel (the job-control protocol) on a subscriber connection. */
  async listen(sub: RedisClient, keys: Keys): Promise<void> {
    await listenCancels(sub, keys, (c) => (c.unstarted ? this.refuseStart(c.jobId) : this.cancel(c.jobId)));
  }
}
