import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { until } from '../../packages/testing/src/env.ts';
import { SERVICE_NODE_FLAGS } from './node-flags.ts';
import { Supervisor } from './supervisor.ts';

const root = mkdtempSync(join(tmpdir(), 'fg-node-flags-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('service node flags', () => {
  it('`pnpm start` runs every service with them', async () => {
    // The service prints the node flags it was started with, then exits.
    writeFileSync(
      join(root, 'flags.mjs'),
      "console.log('flags', JSON.stringify(process.execArgv));\nprocess.exit(0);\n",
    );
    let out = '';
    vi.spyOn(process.stdout, 'write').mockImplementation((c: string | Uint8Array) => {
      out += c.toString();
      return true;
    });
    const sup = new Supervisor({
      root,
      json: true,
      color: false,
      prefixWidth: 8,
      killAfterMs: 5_000,
      restart: { initialMs: 60_000, maxMs: 60_000, resetAfterMs: 60_000 },
    });
    try {
      sup.start({ name: 'flags', script: 'flags.mjs', env: process.env, phase: 1 });
      await until(() => out.includes('flags ['), { what: 'the service to print its flags' });
    } finally {
      await sup.stop();
      vi.restoreAllMocks();
    }
    const line = out.split('\n').find((l) => l.includes('flags ['))!;
    const [, argv] = /flags (\[.*\])/.exec(line)!;
    expect(JSON.parse(argv!)).toEqual(SERVICE_NODE_FLAGS);
  });

  it('the image sets the same flags in NODE_OPTIONS (compose and the Helm chart run the image)', () => {
    const dockerfile = readFileSync(new URL('../../Dockerfile', import.meta.url), 'utf8');
    const env = /^ENV NODE_OPTIONS=(.*)$/m.exec(dockerfile)?.[1]?.replace(/^"|"$/g, '');
    expect(env?.split(/\s+/)).toEqual(SERVICE_NODE_FLAGS);
  });
});
