import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Queue, Worker } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { testRedis, until } from '@faregate/testing/env';
import { createRedis } from './redis.ts';

/**
 * patches/bullmq@<version>.patch edits BullMQ's compiled files (patches/README.md says why). pnpm
 * applies it at install; nothing else would notice if an upgrade or a changed install dropped it.
 * The first test reads the patch itself (so it stays true when the patch changes) and finds each of
 * its hunks, as patched, in the installed files; the second shows the patch's effect.
 */

const require = createRequire(import.meta.url);
const repo = fileURLToPath(new URL('../../../', import.meta.url));
const bullmqRoot = dirname(require.resolve('bullmq/package.json'));
const installed = (JSON.parse(readFileSync(join(bullmqRoot, 'package.json'), 'utf8')) as { version: string })
  .version;

interface Hunk {
  file: string;
  header: string;
  /** The hunk's lines as they read once patched (context and added lines). */
  after: string[];
}

/** The hunks of a unified diff (as `git diff` / `pnpm patch-commit` write them). */
function parsePatch(text: string): Hunk[] {
  const hunks: Hunk[] = [];
  let file = '';
  let hunk: Hunk | undefined;
  for (const line of text.split('\n')) {
    if (line.startsWith('diff --git ')) {
      hunk = undefined;
    } else if (line.startsWith('+++ ')) {
      file = line.slice(4).replace(/^b\//, '');
    } else if (line.startsWith('@@')) {
      hunk = { file, header: line, after: [] };
      hunks.push(hunk);
    } else if (hunk && (line.startsWith(' ') || line.startsWith('+'))) {
      hunk.after.push(line.slice(1));
    } else if (hunk && line === '') {
      // A blank context line may have lost its leading space.
      hunk.after.push('');
    }
  }
  // A trailing blank from the file's final newline is not part of the last hunk.
  const last = hunks.at(-1);
  while (last && last.after.at(-1) === '') last.after.pop();
  return hunks;
}

function contains(lines: string[], block: string[]): boolean {
  outer: for (let i = 0; i + block.length <= lines.length; i++) {
    for (let j = 0; j < block.length; j++) if (lines[i + j] !== block[j]) continue outer;
    return true;
  }
  return false;
}

describe('the BullMQ patch', () => {
  it('is applied to the installed bullmq: every hunk, as patched, is in the installed files', () => {
    const patches = readdirSync(join(repo, 'patches')).filter((f) => /^bullmq@.+\.patch$/.test(f));
    expect(patches, 'one BullMQ patch in patches/').toHaveLength(1);
    const name = patches[0] as string;
    const version = name.slice('bullmq@'.length, -'.patch'.length);
    expect(
      installed,
      `bullmq ${installed} is installed but ${name} patches ${version}: port the patch (patches/README.md) or drop it with this test`,
    ).toBe(version);
    const workspace = readFileSync(join(repo, 'pnpm-workspace.yaml'), 'utf8');
    expect(workspace, 'pnpm-workspace.yaml patchedDependencies lists the patch').toContain(
      `bullmq@${version}: patches/${name}`,
    );

    const hunks = parsePatch(readFileSync(join(repo, 'patches', name), 'utf8'));
    expect(hunks.length).toBeGreaterThan(0);
    const missing = hunks.filter((h) => {
      const lines = readFileSync(join(bullmqRoot, h.file), 'utf8').split('\n');
      return !contains(lines, h.after);
    });
    expect(
      missing.map((h) => `${h.file} ${h.header}`),
      `hunks of ${name} not applied in ${bullmqRoot}`,
    ).toEqual([]);
  });

  describe('its effect', () => {
    const { url, prefix } = testRedis();
    let redis: Redis;
    let monitor: Redis | undefined;
    let workerConnection: Redis;
    /** The commands on this file's keys Redis ran while the monitor was on, in order. */
    const seen: { source: string; args: string[] }[] = [];

    beforeAll(async () => {
      redis = createRedis(url);
      workerConnection = createRedis(url, { blocking: true });
      monitor = await openMonitor(redis);
      monitor.on('monitor', (_time: string, args: string[], source: string) => {
        if (args.some((a) => typeof a === 'string' && a.startsWith(`${prefix}:`)))
          seen.push({ source, args });
      });
    });
    afterAll(() => {
      monitor?.disconnect();
      workerConnection.disconnect();
      redis.disconnect();
    });

    /** Resolves once the monitor has seen every command Redis ran before this call. */
    const caughtUp = async (): Promise<number> => {
      const probe = `${prefix}:probe:${Math.random()}`;
      await redis.exists(probe);
      return until(
        () => {
          const i = seen.findIndex((c) => c.args[1] === probe);
          return i >= 0 ? i : undefined;
        },
        { what: 'the monitor to catch up' },
      );
    };

    it('an idle worker that receives a job runs one moveToActive for it, and no empty one', async () => {
      const queueName = 'patch-effect';
      const marker = `${prefix}:${queueName}:marker`;
      const wait = `${prefix}:${queueName}:wait`;
      // ioredis runs the script by its SHA-1 (EVAL once if Redis did not know it yet). Node loads
      // bullmq's CommonJS build (its package.json `main`), as the services do.
      const { moveToActive } = require(join(bullmqRoot, 'dist/cjs/scripts/moveToActive-11.js')) as {
        moveToActive: { content: string };
      };
      const sha = sha1(moveToActive.content);
      const isMoveToActive = (c: { args: string[] }) => {
        const cmd = c.args[0]?.toLowerCase();
        const script = cmd === 'evalsha' ? c.args[1] : cmd === 'eval' ? sha1(c.args[1] ?? '') : '';
        return script === sha && c.args[3] === wait;
      };

      let release = () => {};
      let started = 0;
      const queue = new Queue(queueName, { connection: redis, prefix });
      const worker = new Worker(
        queueName,
        async () => {
          started++;
          await new Promise<void>((r) => {
            release = r;
          });
        },
        // Free slots (where upstream polled again) and no idle re-poll during the test.
        { connection: workerConnection, prefix, concurrency: 4, drainDelay: 300 },
      );
      let completed = 0;
      worker.on('completed', () => completed++);
      try {
        // The worker's blocking connection: the one that waits on the queue's marker.
        const blocking = await until(
          () => seen.find((c) => c.args[0]?.toLowerCase() === 'bzpopmin' && c.args[1] === marker)?.source,
          { what: 'the worker to wait on the marker' },
        );
        const blocked = () =>
          until(
            async () => {
              const line = ((await redis.client('LIST')) as string)
                .split('\n')
                .find((l) => l.includes(` addr=${blocking} `));
              return /\bflags=\S*b/.test(line ?? '') && /\bcmd=bzpopmin\b/.test(line ?? '');
            },
            { what: 'the worker to block on the marker' },
          );

        await blocked();
        const from = await caughtUp();
        const jobs = 3;
        for (let n = 1; n <= jobs; n++) {
          const mark = await caughtUp();
          await queue.add('job', { n }, { removeOnComplete: true });
          await until(() => started === n, { what: `job ${n} to start` });
          // Blocked again while the job runs: whatever fetches it cost are behind us.
          await blocked();
          const to = await caughtUp();
          expect(seen.slice(mark, to).filter(isMoveToActive), `moveToActive for job ${n}`).toHaveLength(1);
          release();
          await until(() => completed === n, { what: `job ${n} to complete` });
          await blocked();
        }
        const to = await caughtUp();
        // Nothing between the jobs either (an empty fetch after a job finished would show here).
        expect(seen.slice(from, to).filter(isMoveToActive)).toHaveLength(jobs);
      } finally {
        release();
        await worker.close();
        await queue.obliterate({ force: true }).catch(() => {});
        await queue.close();
      }
    });
  });
});

/**
 * A MONITOR connection. ioredis's own `redis.monitor()` rejects when a monitored line arrives in the
 * same read as MONITOR's `OK`, before ioredis has switched the connection to monitoring (it emits
 * "Command queue state error"): on a busy Redis (CI runs other test files at once) that happens.
 * Such lines are other clients' commands from before this test began, so they may be dropped; any
 * other error fails the test.
 */
function openMonitor(from: Redis): Promise<Redis> {
  const monitor = from.duplicate({ monitor: true, lazyConnect: false });
  return new Promise((resolve, reject) => {
    let monitoring = false;
    monitor.on('error', (err: Error) => {
      if (!monitoring && /Command queue state error/.test(err.message)) return;
      if (!monitoring) {
        monitor.disconnect();
        reject(err);
      }
    });
    monitor.once('monitoring', () => {
      monitoring = true;
      resolve(monitor);
    });
  });
}

const sha1 = (s: string) => createHash('sha1').update(s).digest('hex');
