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
    this.#timer = setInterval(() => {
      const silent = Date.now() - this.#lastHeard;
      if (silent >= 2 * this.#everyMs) dead();
      else if (silent >= this.#everyMs) ping();
    }, this.#everyMs);
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
