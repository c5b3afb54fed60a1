import type { RedisClient } from './redis.ts';
import type { Keys } from './keys.ts';

type Listener = (raw: string) => void;

/**
 * One subscriber connection per process serves every live job channel: SUBSCRIBE on the first
 * listener of a job, UNSUBSCRIBE after the last. Never a connection or a blocking read per request.
 */
export class LiveHub {
  readonly #sub: RedisClient;
  readonly #keys: Keys;
  readonly #listeners = new Map<string, Set<Listener>>();
  readonly #pending = new Map<string, Promise<unknown>>();
  /** This process's own reply channel, and the jobs waiting on it (no Redis command per job). */
  #replyChannel: string | undefined;
  readonly #replies = new Map<string, Listener>();
  /** Followers to re-read from their cursors after the subscriber connection came back. */
  readonly #resyncs = new Set<() => void>();
  #connectedOnce = false;

  constructor(sub: RedisClient, keys: Keys) {
    this.#sub = sub;
    this.#keys = keys;
    // Messages published while the connection was down are lost (pub/sub keeps nothing): after a
    // reconnect every follower reads its job's stream from its cursor, so nothing goes missing.
    this.#connectedOnce = sub.status === 'ready';
    sub.on('ready', () => {
      if (this.#connectedOnce) for (const r of this.#resyncs) r();
      this.#connectedOnce = true;
    });
    sub.on('message', (channel: string, message: string) => {
      if (channel === this.#replyChannel) {
        this.#replies.get(jobOf(message))?.(message);
        return;
      }
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

  /**
   * Subscribes once to this process's reply channel. Jobs submitted here carry it as `replyTo`,
   * and workers publish their frames there too, so waiting on a job costs no SUBSCRIBE/UNSUBSCRIBE.
   */
  async listenReplies(channel: string): Promise<void> {
    this.#replyChannel = channel;
    await this.#sub.subscribe(channel);
  }

  get replyChannel(): string | undefined {
    return this.#replyChannel;
  }

  /**
   * Hands this process's reply listeners a frame written in this process (a pool it hosts: see
   * FrameStore's `localReply`), as if it had come on the reply channel, which it was not published on.
   */
  deliverReply(message: string): void {
    this.#replies.get(jobOf(message))?.(message);
  }

  /** Frames of a job published on this process's reply channel. Synchronous: nothing to wait for. */
  onReply(jobId: string, listener: Listener): () => void {
    this.#replies.set(jobId, listener);
    return () => {
      if (this.#replies.get(jobId) === listener) this.#replies.delete(jobId);
    };
  }

  /** Registers a callback run after every reconnect of the subscriber connection. */
  onResync(resync: () => void): () => void {
    this.#resyncs.add(resync);
    return () => this.#resyncs.delete(resync);
  }

  get channels(): number {
    return this.#listeners.size;
  }
}

/** The job id of a frame we wrote (`{"v":1,"job":"<id>",…`), without a full JSON.parse. */
function jobOf(raw: string): string {
  const i = raw.indexOf('"job":"');
  if (i < 0) return '';
  const start = i + 7;
  return raw.slice(start, raw.indexOf('"', start));
}
