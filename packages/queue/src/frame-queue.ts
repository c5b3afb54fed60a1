/**
 * An unbounded async queue of raw frames between a follower callback and one consumer loop.
 * Bounded in practice by what one job produces; WebSocket connections bound it themselves.
 */
export class FrameQueue {
  #items: string[] = [];
  #wake: (() => void) | undefined;
  #closed = false;

  push = (raw: string): void => {
    this.#items.push(raw);
    this.#wake?.();
  };

  close(): void {
    this.#closed = true;
    this.#wake?.();
  }

  get size(): number {
    return this.#items.length;
  }

  /** Next frame, or undefined when closed and drained, or when `signal` fires. */
  async next(signal?: AbortSignal): Promise<string | undefined> {
    for (;;) {
      const item = this.#items.shift();
      if (item !== undefined) return item;
      if (this.#closed || signal?.aborted) return undefined;
      await new Promise<void>((resolve) => {
        const done = () => {
          this.#wake = undefined;
          signal?.removeEventListener('abort', done);
          resolve();
        };
        this.#wake = done;
        signal?.addEventListener('abort', done, { once: true });
      });
    }
  }
}
