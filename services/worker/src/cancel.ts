import type { RedisClient } from '@faregate/queue/redis';
import { GatewayError } from '@faregate/contracts/errors';
import { listenCancels } from '@faregate/queue/job-control';
import type { Keys } from '@faregate/queue/keys';

/**
 * Cancellation across processes: any ingress publishes a job id on one channel; the worker that
 * runs the job aborts its provider call. (BullMQ's cancelJob only reaches the local worker.)
 */
export class CancelRegistry {
  readonly #running = new Map<string, AbortController>();

  register(jobId: string, ac: AbortController): () => void {
    this.#running.set(jobId, ac);
    return () => {
      if (this.#running.get(jobId) === ac) this.#running.delete(jobId);
    };
  }

  cancel(jobId: string, reason = 'cancelled by the caller'): boolean {
    const ac = this.#running.get(jobId);
    if (!ac) return false;
    ac.abort(new GatewayError({ code: 'cancelled', message: reason }));
    return true;
  }

  get size(): number {
    return this.#running.size;
  }

  /** Follows the cancel channel (the job-control protocol) on a subscriber connection. */
  async listen(sub: RedisClient, keys: Keys): Promise<void> {
    await listenCancels(sub, keys, (jobId) => this.cancel(jobId));
  }
}
