import type { Frame } from '@faregate/contracts/frames';

/** Frames buffered for a slow reader before the SDK stops taking more (it re-subscribes later). */
const HIGH_WATER = 4096;
const LOW_WATER = 1024;

export type Offer = 'accepted' | 'duplicate' | 'gap' | 'ignored';

export interface SubscriberHooks<T extends Sequenced = Frame> {
  /** The reader fell behind (buffer full) or caught up again: subscribe / unsubscribe as needed. */
  onFlowChange(sub: Subscriber<T>): void;
  /** Needs no more frames (terminal frame taken, `return()`, abort or failure). Called once. */
  onRelease(sub: Subscriber<T>): void;
  /** The last item of the stream (a job's `done` / `error`, a batch's final status). */
  isLast(item: T): boolean;
}

/** What a subscription delivers: a job's frames, or a batch's progress events. */
export interface Sequenced {
  seq: number;
}

/**
 * One `subscribe()` call: a cursor (the last seq taken), a buffer and a single-consumer async
 * iterator. Only the frame right after the cursor is taken, so duplicates from a replay and frames
 * after a gap are dropped here; the connection re-subscribes from the cursor to fill the gap.
 */
export class Subscriber<T extends Sequenced = Frame> implements AsyncIterableIterator<T> {
  /** The job (or batch) followed. */
  readonly job: string;
  /** Last sequence number taken into the buffer (what a resume asks to continue after). */
  cursor: number;
  /** Buffer full: frames are dropped until the reader catches up, then the SDK resumes from the cursor. */
  detached = false;
  /** The terminal frame was taken: nothing more will be accepted. */
  complete = false;
  readonly #hooks: SubscriberHooks<T>;
  readonly #buffer: T[] = [];
  #head = 0;
  #waiter: { resolve: (r: IteratorResult<T>) => void; reject: (e: unknown) => void } | undefined;
  #failure: { error: unknown } | undefined;
  #ended = false;
  #released = false;
  readonly #signal: AbortSignal | undefined;
  readonly #onAbort = () => this.fail(this.#signal?.reason);

  constructor(job: string, after: number, hooks: SubscriberHooks<T>, signal?: AbortSignal) {
    this.job = job;
    this.cursor = after;
    this.#hooks = hooks;
    this.#signal = signal;
    signal?.addEventListener('abort', this.#onAbort, { once: true });
  }

  get active(): boolean {
    return !this.#ended && !this.complete && this.#failure === undefined;
  }

  get buffered(): number {
    return this.#buffer.length - this.#head;
  }

  offer(f: T): Offer {
    if (!this.active || this.detached) return 'ignored';
    if (f.seq <= this.cursor) return 'duplicate';
    if (f.seq !== this.cursor + 1) return 'gap';
    this.#take(f);
    return 'accepted';
  }

  /**
   * The server no longer has the items after the cursor up to `f.seq` (a bounded stream trimmed
   * them): take `f`, which stands for them, and go on after it.
   */
  skipTo(f: T): void {
    if (!this.active || this.detached || f.seq <= this.cursor) return;
    this.#take(f);
  }

  #take(f: T): void {
    this.cursor = f.seq;
    if (this.#hooks.isLast(f)) {
      this.complete = true;
      this.#release();
    }
    if (this.#waiter) {
      const w = this.#waiter;
      this.#waiter = undefined;
      w.resolve({ value: f, done: false });
    } else {
      this.#buffer.push(f);
      if (!this.complete && this.buffered >= HIGH_WATER) {
        this.detached = true;
        this.#hooks.onFlowChange(this);
      }
    }
  }

  /** The server says the job ended at or before this cursor: end the iteration once the buffer is read. */
  endAtLastFrame(): void {
    if (!this.active) return;
    this.complete = true;
    this.#release();
    if (this.#waiter && this.buffered === 0) {
      const w = this.#waiter;
      this.#waiter = undefined;
      this.#finish();
      w.resolve({ value: undefined, done: true });
    }
  }

  /** Ends the iterator with an error (after the frames already buffered are read). */
  fail(error: unknown): void {
    if (this.#ended || this.#failure || this.complete) return;
    this.#failure = { error };
    this.#release();
    if (this.#waiter) {
      const w = this.#waiter;
      this.#waiter = undefined;
      this.#finish();
      w.reject(error);
    }
  }

  next(): Promise<IteratorResult<T>> {
    if (this.#head < this.#buffer.length) {
      const value = this.#buffer[this.#head++] as T;
      if (this.#head > 1024 && this.#head * 2 > this.#buffer.length) {
        this.#buffer.splice(0, this.#head);
        this.#head = 0;
      }
      if (this.detached && this.buffered <= LOW_WATER) {
        this.detached = false;
        this.#hooks.onFlowChange(this);
      }
      return Promise.resolve({ value, done: false });
    }
    if (this.#failure) {
      this.#finish();
      return Promise.reject(this.#failure.error);
    }
    if (this.complete || this.#ended) {
      this.#finish();
      return Promise.resolve({ value: undefined, done: true });
    }
    if (this.#waiter)
      return Promise.reject(new Error('A subscription has a single reader: await next() first.'));
    return new Promise((resolve, reject) => {
      this.#waiter = { resolve, reject };
    });
  }

  /** `break` out of `for await`: stop following the job. */
  return(): Promise<IteratorResult<T>> {
    this.#finish();
    if (this.#waiter) {
      this.#waiter.resolve({ value: undefined, done: true });
      this.#waiter = undefined;
    }
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<T> {
    return this;
  }

  #finish(): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#buffer.length = 0;
    this.#head = 0;
    this.#release();
  }

  #release(): void {
    if (this.#released) return;
    this.#released = true;
    this.#signal?.removeEventListener('abort', this.#onAbort);
    this.#hooks.onRelease(this);
  }
}
