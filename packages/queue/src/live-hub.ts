import type { Redis } from 'ioredis';
import type { Keys } from './keys.ts';

type Listener = (raw: string) => void;

/**
 * One subscriber connection per process serves every live job channel: SUBSCRIBE on the first
 * listener of a job, UNSUBSCRIBE after the last. Never a connection or a blocking read per request.
 */
export class LiveHub {
  readonly #sub: Redis;
  readonly #keys: Keys;
  readonly #listeners = new Map<string, Set<Listener>>();
  readonly #pending = new Map<string, Promise<unknown>>();

  constructor(sub: Redis, keys: Keys) {
    this.#sub = sub;
    this.#keys = keys;
    sub.on('message', (channel: string, message: string) => {
      const set = this.#listeners.get(channel);
      if (!set) return;
      for (const l of set) l(message);
    });
  }

  /** Resolves once the subscription is active, so nothing published afterwards is missed. */
  async listen(jobId: string, listener: Listener): Promise<() => void> {
    const channel = this.#keys.live(jobId);
    let set = this.#listeners.get(channel);
    if (!set) {
      set = new Set();
      this.#listeners.set(channel, set);
      const p = this.#sub.subscribe(channel).finally(() => this.#pending.delete(channel));
      this.#pending.set(channel, p);
    }
    set.add(listener);
    const pending = this.#pending.get(channel);
    if (pending) await pending;
    let active = true;
    return () => {
      if (!active) return;
      active = false;
      const s = this.#listeners.get(channel);
      if (!s) return;
      s.delete(listener);
      if (s.size === 0) {
        this.#listeners.delete(channel);
        this.#sub.unsubscribe(channel).catch(() => {});
      }
    };
  }

  get channels(): number {
    return this.#listeners.size;
  }
}
