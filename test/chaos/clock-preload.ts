import { readFileSync, unwatchFile, watchFile } from 'node:fs';
import { join } from 'node:path';

/**
 * A wall clock the fault campaign can step (`node --import ./clock-preload.ts`, as NODE_OPTIONS):
 * with CHAOS_CLOCK_DIR set, `Date.now()` and `new Date()` run ahead of (or behind) the real clock by the
 * milliseconds written in `<dir>/<process>` (`ingress`, `billing`, `worker-openai`, …), read again
 * whenever the file changes: a host whose clock an NTP step or a bad RTC moved by minutes. The
 * monotonic clocks (`performance.now()`, timers) do not move, as they do not on a real host.
 */

const dir = process.env.CHAOS_CLOCK_DIR;
if (dir) {
  const svc = /services\/([^/]+)\/src\/main\.ts$/.exec(process.argv[1] ?? '')?.[1] ?? 'node';
  const name = svc === 'worker' ? `worker-${process.env.WORKER_PROVIDER ?? ''}` : svc;
  const file = join(dir, name);
  let offset = 0;
  const read = () => {
    try {
      offset = Number(readFileSync(file, 'utf8').trim()) || 0;
    } catch {
      offset = 0;
    }
  };
  read();
  // A stat poll, not a handle that keeps the process alive.
  watchFile(file, { interval: 50, persistent: false }, read);
  process.once('exit', () => unwatchFile(file));

  const RealDate = Date;
  const realNow = RealDate.now.bind(RealDate);
  const shifted = new Proxy(RealDate, {
    construct(target, args, newTarget) {
      return Reflect.construct(target, args.length === 0 ? [realNow() + offset] : args, newTarget);
    },
    // `Date()` called as a function returns the current time as a string.
    apply() {
      return new RealDate(realNow() + offset).toString();
    },
  });
  RealDate.now = () => realNow() + offset;
  globalThis.Date = shifted;
}
