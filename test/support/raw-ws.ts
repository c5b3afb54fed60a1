import { once } from 'node:events';
import type { Socket } from 'node:net';
import WebSocket from 'ws';

export type Message = Record<string, unknown> & { type?: string; seq?: number; job?: string };

/**
 * A protocol-v1 client with no cleverness: it records every message, lets a test await the next one
 * that matches, and exposes the TCP socket so a test can stop reading or cut the connection.
 */
export class RawWs {
  readonly ws: WebSocket;
  readonly messages: Message[] = [];
  /** Set once the socket closed: the close code (4008 = slow consumer). */
  closeCode: number | undefined;
  readonly closed: Promise<number>;
  #waiters: Array<{ pred: (m: Message) => boolean; resolve: (m: Message) => void }> = [];

  private constructor(ws: WebSocket) {
    this.ws = ws;
    this.closed = new Promise((resolve) => {
      ws.on('close', (code) => {
        this.closeCode = code;
        resolve(code);
      });
    });
    ws.on('message', (d) => {
      const m = JSON.parse(d.toString()) as Message;
      this.messages.push(m);
      this.#waiters = this.#waiters.filter((w) => {
        if (!w.pred(m)) return true;
        w.resolve(m);
        return false;
      });
    });
  }

  static async open(baseUrl: string, apiKey: string): Promise<RawWs> {
    const ws = new WebSocket(`${baseUrl.replace(/^http/, 'ws')}/v1/stream`, {
      headers: { authorization: `Bearer ${apiKey}` },
    });
    const c = new RawWs(ws);
    await Promise.race([
      once(ws, 'open'),
      once(ws, 'unexpected-response').then(() => {
        throw new Error('WebSocket upgrade refused');
      }),
    ]);
    return c;
  }

  send(op: Record<string, unknown>): void {
    this.ws.send(JSON.stringify(op));
  }

  /** The first message (already received or still to come) matching `pred`; fails if the socket closes first. */
  next(pred: (m: Message) => boolean, what = 'message'): Promise<Message> {
    const seen = this.messages.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      this.#waiters.push({ pred, resolve });
      void this.closed.then((code) => reject(new Error(`socket closed (${code}) while waiting for ${what}`)));
    });
  }

  /** Job frames received for `job`, in arrival order. */
  frames(job: string): Message[] {
    return this.messages.filter((m) => m.job === job && typeof m.seq === 'number');
  }

  /** The underlying TCP socket (to pause reading or destroy it, as a network fault would). */
  get tcp(): Socket {
    return (this.ws as unknown as { _socket: Socket })._socket;
  }

  /** Drops the connection without a close handshake, like a lost network. */
  cut(): Promise<number> {
    this.ws.terminate();
    return this.closed;
  }

  async close(): Promise<void> {
    if (this.closeCode !== undefined) return;
    this.ws.close();
    await this.closed;
  }
}

export const isTerminal = (m: Message) => m.type === 'done' || m.type === 'error';
