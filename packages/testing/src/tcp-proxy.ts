import { once } from 'node:events';
import { connect, createServer, type Server, type Socket } from 'node:net';

/**
 * A TCP proxy in front of a server (Postgres, in the outage tests) that a test can cut: `cut()`
 * resets every open connection and refuses new ones (the server looks unreachable), `restore()` lets
 * them through again. `refused` counts the connections refused while cut. `delayMs` > 0 holds every
 * chunk that long in each direction (a slow server or network), in order.
 */
export class TcpProxy {
  readonly #server: Server;
  readonly #open = new Set<Socket>();
  #down = false;
  refused = 0;
  delayMs = 0;

  /** `target`: a URL naming the server (its host, and its port or `defaultPort`). */
  constructor(target: URL, defaultPort = 5432) {
    this.#server = createServer((client) => {
      if (this.#down) {
        this.refused++;
        client.resetAndDestroy();
        return;
      }
      const upstream = connect(Number(target.port || defaultPort), target.hostname);
      for (const s of [client, upstream]) {
        this.#open.add(s);
        s.on('close', () => this.#open.delete(s));
        s.on('error', () => {
          client.destroy();
          upstream.destroy();
        });
      }
      this.#relay(client, upstream);
      this.#relay(upstream, client);
    });
  }

  /** Listens, and returns `url` rewritten to go through the proxy. */
  async start(url: string): Promise<string> {
    this.#server.listen(0, '127.0.0.1');
    await once(this.#server, 'listening');
    const u = new URL(url);
    u.hostname = '127.0.0.1';
    u.port = String((this.#server.address() as { port: number }).port);
    return u.toString();
  }

  /** Copies `from` to `to`, each chunk held `delayMs` when set (order kept: one timer chain per direction). */
  #relay(from: Socket, to: Socket): void {
    let tail = Promise.resolve();
    let pending = 0;
    from.on('data', (chunk: Buffer) => {
      if (this.delayMs <= 0 && pending === 0) {
        to.write(chunk);
        return;
      }
      pending++;
      const wait = this.delayMs;
      tail = tail.then(
        () =>
          new Promise<void>((resolve) =>
            setTimeout(() => {
              pending--;
              if (!to.destroyed) to.write(chunk);
              resolve();
            }, wait),
          ),
      );
    });
    from.on('end', () => {
      void tail.then(() => to.end());
    });
  }

  cut(): void {
    this.#down = true;
    for (const s of this.#open) s.resetAndDestroy();
  }

  restore(): void {
    this.#down = false;
  }

  async stop(): Promise<void> {
    this.cut();
    await new Promise((r) => this.#server.close(r));
  }
}
