import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { until } from '../../packages/testing/src/env.ts';
import { Supervisor } from './supervisor.ts';

// Tiny services: one that crashes at once, one that runs until SIGTERM and then exits with code 1.
const root = mkdtempSync(join(tmpdir(), 'fg-supervisor-'));
writeFileSync(join(root, 'crash.mjs'), "console.log('up', process.env.TAG); process.exit(3);\n");
writeFileSync(
  join(root, 'serve.mjs'),
  // 'up' only once the SIGTERM handler is in place: a stop right after 'up' must find it.
  "process.on('SIGTERM', () => process.exit(1)); setInterval(() => {}, 1000); console.log('up');\n",
);
afterAll(() => rmSync(root, { recursive: true, force: true }));

let out = '';
beforeEach(() => {
  out = '';
  const capture = (chunk: string | Uint8Array) => {
    out += chunk.toString();
    return true;
  };
  vi.spyOn(process.stdout, 'write').mockImplementation(capture);
  vi.spyOn(process.stderr, 'write').mockImplementation(capture);
});
afterEach(() => vi.restoreAllMocks());

const supervisor = (initialMs: number) =>
  new Supervisor({
    root,
    json: false,
    color: false,
    prefixWidth: 8,
    killAfterMs: 5_000,
    restart: { initialMs, maxMs: 4 * initialMs, resetAfterMs: 60_000 },
  });

describe('Supervisor', () => {
  it('restarts a service that exits on its own, with the same environment and a doubling, capped delay', async () => {
    const sup = supervisor(20);
    const r = sup.start({ name: 'crash', script: 'crash.mjs', env: { ...process.env, TAG: 'x' }, phase: 1 });
    await until(() => r.crashes >= 4, { what: 'four crashes' });
    await sup.stop();
    expect(out).toContain('[crash]  exited (code 3); restarting in 20 ms (restart 1)\n');
    expect(out).toContain('[crash]  exited (code 3); restarting in 40 ms (restart 2)\n');
    expect(out).toContain('[crash]  exited (code 3); restarting in 80 ms (restart 3)\n');
    expect(out).toContain('[crash]  exited (code 3); restarting in 80 ms (restart 4)\n');
    expect(out.split('[crash]  up x\n').length - 1).toBeGreaterThanOrEqual(4);
    expect(r.alive).toBe(false);
  });

  it('does not restart what it stops, even when it exits with an error', async () => {
    const sup = supervisor(1);
    const r = sup.start({ name: 'serve', script: 'serve.mjs', env: process.env, phase: 1 });
    await until(() => out.includes('[serve]  up'), { what: 'the service to run' });
    const pid = r.proc.pid;
    await sup.stop();
    expect(r.alive).toBe(false);
    expect(r.crashes).toBe(0);
    expect(r.proc.pid).toBe(pid);
    expect(out).toContain('[serve]  exited with code 1\n');
    expect(out).not.toContain('restarting');
  });

  it('stop() cancels a restart that is waiting for its delay', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    try {
      const sup = supervisor(60_000);
      const r = sup.start({ name: 'crash', script: 'crash.mjs', env: process.env, phase: 2 });
      await r.closed;
      const pid = r.proc.pid;
      expect(r.crashes).toBe(1);
      expect(out).toContain('[crash]  exited (code 3); restarting in 60000 ms (restart 1)\n');
      expect(vi.getTimerCount()).toBe(1);
      await sup.stop();
      expect(vi.getTimerCount()).toBe(0);
      vi.advanceTimersByTime(120_000);
      expect(r.proc.pid).toBe(pid);
    } finally {
      vi.useRealTimers();
    }
  });
});
