import { once } from 'node:events';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';

async function isFree(port: number): Promise<boolean> {
  // Same bind as the services (all interfaces), so "free" here means they can listen on it.
  const server = createServer();
  server.listen(port);
  try {
    await Promise.race([
      once(server, 'listening'),
      once(server, 'error').then(([e]) => Promise.reject(e as Error)),
    ]);
    return true;
  } catch {
    return false;
  } finally {
    if (server.listening) await new Promise<void>((r) => server.close(() => r()));
  }
}

/** Ports this process reserved (their claim files are removed when it exits). */
const claimed = new Set<string>();
process.once('exit', () => {
  for (const f of claimed) rmSync(f, { force: true });
});

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
};

/**
 * Reserves `port` for this process across every `pnpm start` on the machine: a file created
 * exclusively, holding our pid; one whose process is gone is taken over. Without it two starts at the
 * same moment both found 8090 free (probing, then binding later) and both stopped on EADDRINUSE.
 */
function claim(port: number): boolean {
  const file = join(tmpdir(), `faregate-port-${port}.claim`);
  for (let tries = 0; tries < 2; tries++) {
    try {
      writeFileSync(file, String(process.pid), { flag: 'wx' });
      claimed.add(file);
      return true;
    } catch {
      let owner = 0;
      try {
        owner = Number(readFileSync(file, 'utf8').trim()) || 0;
      } catch {
        continue; // removed meanwhile: try again
      }
      if (owner === process.pid) return true;
      if (owner > 0 && alive(owner)) return false;
      rmSync(file, { force: true });
    }
  }
  return false;
}

/** Gives a reserved port back (a start does at exit; a test when it is done). */
export function release(port: number): void {
  const file = join(tmpdir(), `faregate-port-${port}.claim`);
  if (claimed.delete(file)) rmSync(file, { force: true });
}

/**
 * The first port from `from` up that nothing listens on, that is not in `taken` (then added to it),
 * and that no other `pnpm start` on this machine has reserved (then reserved for this one).
 */
export async function freePort(from: number, taken: Set<number>): Promise<number> {
  for (let port = from; port < from + 200 && port <= 65_535; port++) {
    if (taken.has(port)) continue;
    if (!claim(port)) continue;
    if (await isFree(port)) {
      taken.add(port);
      return port;
    }
    release(port);
  }
  throw new Error(`no free port in ${from}–${from + 199}`);
}

/**
 * Polls `url` until it answers 2xx. Gives up at the deadline, or as soon as `gone()` says the process
 * that should answer has exited (its own output says why).
 */
export async function waitForHttp(
  url: string,
  opts: { timeoutMs: number; gone: () => boolean; what: string },
): Promise<void> {
  const end = Date.now() + opts.timeoutMs;
  for (;;) {
    if (opts.gone()) throw new Error(`${opts.what} exited before it was ready`);
    const ok = await fetch(url, { signal: AbortSignal.timeout(2_000) }).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) return;
    if (Date.now() > end)
      throw new Error(`${opts.what} was not ready within ${opts.timeoutMs / 1000} s (${url})`);
    await delay(200);
  }
}

/** Whether a TCP connection to the server in `url` (redis://host:port) opens: a fast, clear failure. */
export async function reachable(url: string, timeoutMs = 3_000): Promise<boolean> {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return false;
  }
  const socket = connect({
    host: u.hostname.replace(/^\[|\]$/g, '') || '127.0.0.1',
    port: Number(u.port || 6379),
  });
  socket.setTimeout(timeoutMs, () => socket.destroy(new Error('timeout')));
  try {
    await once(socket, 'connect');
    return true;
  } catch {
    return false;
  } finally {
    socket.destroy();
  }
}
