/**
 * Detects a dead connection that TCP has not noticed (a vanished NAT entry, a sleeping laptop):
 * after `everyMs` of silence it asks for a ping; after twice that it declares the socket dead.
 * The server pings too, but a client must not rely on the server to learn that it is cut off.
 */
export class Heartbeat {
  readonly #everyMs: number;
  #timer: ReturnType<typeof setInterval> | undefined;
  #lastHeard = 0;

  constructor(everyMs: number) {
    this.#everyMs = everyMs;
  }

  /** Anything arrived from the server. */
  heard(): void {
    this.#lastHeard = Date.now();
  }

  start(ping: () => void, dead: () => void): void {
    this.stop();
    this.heard();
    let pingedAt = 0;
    // A socket is given up only after a ping went unanswered for a whole period: a late timer
    // (a busy event loop) must never declare a connection dead that was not even asked.
    this.#timer = setInterval(
      () => {
        const now = Date.now();
        if (pingedAt > this.#lastHeard) {
          if (now - pingedAt >= this.#everyMs) dead();
        } else if (now - this.#lastHeard >= this.#everyMs) {
          pingedAt = now;
          ping();
        }
      },
      Math.max(1, Math.floor(this.#everyMs / 2)),
    );
    unref(this.#timer);
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
  }
}

/** Timers must not keep a Node process alive on their own (no-op in browsers). */
export function unref(t: unknown): void {
  (t as { unref?: () => void }).unref?.();
}
