import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { until } from '@faregate/testing/env';

/**
 * A real HAProxy (Debian's `haproxy`; .ci/run installs it) in front of several ingresses: round
 * robin, health-checked on `/readyz` every second (an ingress leaves the rotation after three failed
 * checks), a request that could not connect retried on another ingress (redispatch). WebSockets and SSE
 * pass through (long tunnel timeout).
 */
export interface Balancer {
  url: string;
  proc: ChildProcess;
  stop(): Promise<void>;
}

export function haproxyBinary(): string {
  for (const bin of ['/usr/sbin/haproxy', 'haproxy']) {
    try {
      execFileSync(bin, ['-v'], { stdio: 'ignore' });
      return bin;
    } catch {}
  }
  throw new Error('haproxy is not installed: apt-get install -y haproxy (.ci/run does)');
}

export async function startHaproxy(port: number, backends: readonly string[]): Promise<Balancer> {
  const dir = mkdtempSync(join(tmpdir(), 'faregate-haproxy-'));
  const cfg = join(dir, 'haproxy.cfg');
  writeFileSync(
    cfg,
    [
      'global',
      '  maxconn 4096',
      'defaults',
      '  mode http',
      '  timeout connect 2s',
      // /readyz pings Redis and Postgres: give it time on a loaded machine before calling an ingress down.
      '  timeout check 5s',
      '  timeout client 120s',
      '  timeout server 120s',
      '  timeout tunnel 1h',
      '  retries 3',
      '  option redispatch',
      'frontend api',
      `  bind 127.0.0.1:${port}`,
      '  default_backend ingresses',
      'backend ingresses',
      '  balance roundrobin',
      '  option httpchk GET /readyz',
      ...backends.map((b, i) => `  server ingress${i + 1} ${b} check inter 1s fall 3 rise 1`),
      '',
    ].join('\n'),
  );
  const proc = spawn(haproxyBinary(), ['-db', '-f', cfg], { stdio: ['ignore', 'pipe', 'pipe'] });
  const output: string[] = [];
  proc.stdout?.on('data', (b: Buffer) => output.push(b.toString()));
  proc.stderr?.on('data', (b: Buffer) => output.push(b.toString()));
  const url = `http://127.0.0.1:${port}`;
  await until(
    async () => {
      if (proc.exitCode !== null) throw new Error(`haproxy exited ${proc.exitCode}: ${output.join('')}`);
      return (await fetch(`${url}/readyz`).catch(() => undefined))?.ok;
    },
    { timeoutMs: 30_000, what: 'haproxy forwarding to a ready ingress' },
  );
  return {
    url,
    proc,
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill('SIGTERM');
      await once(proc, 'exit');
    },
  };
}
