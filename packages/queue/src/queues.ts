import { Queue, type JobsOptions } from 'bullmq';
import type { RedisClient } from './redis.ts';
import type { JobData } from '@faregate/contracts/jobs';
import { jobIdForHop } from '@faregate/contracts/jobs';
import type { Keys } from './keys.ts';

/** Job options for provider queues. One BullMQ job per request; finished jobs are removed quickly. */
export function providerJobOptions(data: JobData, attempts: number): JobsOptions {
  return {
    jobId: jobIdForHop(data.id, data.hop),
    attempts,
    backoff: { type: 'exponential', delay: 500, jitter: 0.5 },
    // Completed jobs are dropped at once (fewer Redis commands per request). A hop re-added after
    // a crash is still harmless: its worker's claim finds the job's terminal frame and stops.
    removeOnComplete: true,
    removeOnFail: { age: 24 * 3600, count: 10_000 },
  };
}

/** Lazily created BullMQ queues, one per provider pool, sharing one connection. */
export class ProviderQueues {
  readonly #queues = new Map<string, Queue<JobData>>();
  readonly #connection: RedisClient;
  readonly #keys: Keys;

  constructor(connection: RedisClient, keys: Keys) {
    this.#connection = connection;
    this.#keys = keys;
  }

  get(provider: string): Queue<JobData> {
    let q = this.#queues.get(provider);
    if (!q) {
      q = new Queue<JobData>(this.#keys.queue(provider), {
        connection: this.#connection,
        prefix: this.#keys.prefix,
        streams: { events: { maxLen: 2000 } },
      });
      this.#queues.set(provider, q);
    }
    return q;
  }

  /**
   * BullMQ's attempt ceiling per hop. The worker decides retries itself from its pool's configured
   * attempts (WORKER_ATTEMPTS), and falls back or fails before reaching this.
   */
  async add(data: JobData, attempts = 10, opts: { delay?: number; priority?: number } = {}): Promise<void> {
    const candidate = data.plan[data.hop];
    if (!candidate) throw new Error(`job ${data.id} has no candidate for hop ${data.hop}`);
    await this.get(candidate.provider).add('chat', data, { ...providerJobOptions(data, attempts), ...opts });
  }

  /**
   * The job, handed to plan candidate `hop` on that provider's queue (a fallback). Its job id is
   * deterministic (`<id>-h<hop>`), so a process that dies after this add and does it again adds
   * nothing twice. The next hop counts its attempts from 1 (no `attemptBase`).
   */
  async addHop(data: JobData, hop: number, attempts: JobData['attempts']): Promise<void> {
    const { attemptBase: _, ...hopData } = data;
    await this.add({ ...hopData, hop, attempts });
  }

  async close(): Promise<void> {
    await Promise.all([...this.#queues.values()].map((q) => q.close()));
  }
}
