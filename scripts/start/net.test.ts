import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { freePort, release } from './net.ts';

const NET = new URL('./net.ts', import.meta.url).pathname;
const claimFile = (port: number) => join(tmpdir(), `faregate-port-${port}.claim`);

/** Another `pnpm start`: reserves a port from `from`, says which, and waits for its stdin to close. */
async function otherStart(from: number) {
  const child = spawn(
    process.execPath,
    [
      '--input-type=module',
      '-e',
      `const { freePort } = await import(${JSON.stringify(NET)});
       console.log(await freePort(${from}, new Set()));
       process.stdin.resume(); process.stdin.on('end', () => process.exit(0));`,
    ],
    { stdio: ['pipe', 'pipe', 'inherit'] },
  );
  const [line] = (await once(child.stdout!, 'data')) as [Buffer];
  return {
    child,
    port: Number(line.toString().trim()),
    stop: () => {
      child.stdin!.end();
      return once(child, 'exit');
    },
  };
}

/**
 * A port to start from, below the test stacks' bands (20,000 up, test/support/stack.ts) and the
 * kernel's ephemeral range (32,768 up), where any outgoing connection's local port, or another
 * stack's service, took the port this test expects free (CI: 40,449 for 40,448).
 */
const fromPort = () => 12_000 + Math.floor(Math.random() * 7_000);

describe('freePort across starts on one machine', () => {
  it('a port another running start reserved is skipped, and is free again once that start is gone', async () => {
    const from = fromPort();
    const other = await otherStart(from);
    expect(other.port).toBe(from);
    // Nothing listens on it yet (the other start has not bound it): only the reservation keeps us off.
    const mine = await freePort(from, new Set());
    expect(mine).toBeGreaterThan(from);
    await other.stop();
    expect(existsSync(claimFile(from))).toBe(false);
    expect(await freePort(from, new Set())).toBe(from);
    // (A test runner's worker may never run exit hooks: give ours back.)
    for (const p of [mine, from]) release(p);
    expect(existsSync(claimFile(mine))).toBe(false);
  });

  it('a reservation left by a start that was killed is taken over', async () => {
    const from = fromPort();
    const other = await otherStart(from);
    // kill -9: no exit handler runs, and the claim file stays, naming a dead process.
    other.child.kill('SIGKILL');
    await once(other.child, 'exit');
    expect(Number(readFileSync(claimFile(from), 'utf8'))).toBe(other.child.pid);
    expect(await freePort(from, new Set())).toBe(from);
    release(from);
    expect(existsSync(claimFile(from))).toBe(false);
  });
});
