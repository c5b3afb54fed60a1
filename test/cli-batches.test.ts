import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BatchOutputLine } from '@faregate/contracts/openai-batches';
import { until } from '@faregate/testing/env';
import { Faregate } from '../packages/sdk/src/client.ts';
import { adminCall } from './support/calls.ts';
import { type Stack, startStack } from './support/stack.ts';

/** The `faregate` CLI as a user runs it (a child process), against the real services. */
const CLI = fileURLToPath(new URL('../packages/sdk/src/cli/faregate.ts', import.meta.url));
let stack: Stack;
let sy: Faregate;
let dir: string;
let otherKey: string;

beforeAll(async () => {
  stack = await startStack({ providers: ['openai'], env: { BATCH_TICK_MS: '50', BATCH_MAX_IN_FLIGHT: '4' } });
  sy = new Faregate({ baseURL: stack.url, apiKey: stack.apiKey });
  dir = await mkdtemp(join(tmpdir(), 'faregate-cli-'));
  const acc = await adminCall(stack, 'POST', '/admin/v1/accounts', { name: 'other tenant' });
  const k = await adminCall(stack, 'POST', '/admin/v1/keys', { account_id: acc.id, name: 'k' });
  otherKey = String(k.key);
}, 90_000);
afterAll(async () => {
  sy?.close();
  await stack?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

function cli(args: string[], env: Record<string, string> = {}) {
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      cwd: dir,
      env: { ...process.env, FAREGATE_URL: stack.url, FAREGATE_API_KEY: stack.apiKey, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => {
      stdout += d;
    });
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

const parseLines = (text: string) =>
  text
    .split('\n')
    .filter(Boolean)
    .map((l) => BatchOutputLine.parse(JSON.parse(l)));

describe('faregate batches', () => {
  it('creates a batch from a file with --model on every line, watches it to the end, downloads its output', async () => {
    stack.fake.configure({ provider: 'openai', firstByteMs: 30, chunkMs: 0, tokens: 6 });
    const total = 12;
    // Every line names a model nobody serves: only --model makes them run.
    const input = Array.from({ length: total }, (_, i) =>
      JSON.stringify({
        custom_id: `c-${i + 1}`,
        method: 'POST',
        url: '/v1/chat/completions',
        body: { model: 'no-such-model', messages: [{ role: 'user', content: `question ${i + 1}` }] },
      }),
    ).join('\n');
    await writeFile(join(dir, 'requests.jsonl'), `${input}\n`);
    const r = await cli([
      'batches',
      'create',
      'requests.jsonl',
      '--model',
      'gpt-4o-mini',
      '--metadata',
      'team=cli',
      '--watch',
      '--output',
      'out.jsonl',
      '--errors',
      'err.jsonl',
    ]);
    expect(r.stderr).toContain('in_progress');
    expect(r.code, r.stderr).toBe(0);
    const id = /^(batch_\S+): completed, 12 completed, 0 failed of 12$/m.exec(r.stdout)?.[1];
    expect(id, r.stdout).toBeDefined();
    const b = await sy.batches.retrieve(String(id));
    expect(b).toMatchObject({ status: 'completed', metadata: { team: 'cli' } });
    expect(r.stdout).toContain(`output_file_id: ${b.output_file_id}`);
    expect(b.error_file_id).toBeNull();
    expect(existsSync(join(dir, 'err.jsonl'))).toBe(false);

    // The file written is the gateway's output file, byte for byte, one answer per line.
    const written = await readFile(join(dir, 'out.jsonl'), 'utf8');
    expect(written).toBe(await (await sy.files.content(String(b.output_file_id))).text());
    const out = parseLines(written);
    expect(out.map((o) => o.custom_id)).toEqual(Array.from({ length: total }, (_, i) => `c-${i + 1}`));
    for (const o of out) {
      expect(o.response?.status_code).toBe(200);
      expect((o.response?.body as { model?: string } | undefined)?.model).toContain('gpt-4o-mini');
    }

    // get, list and download of the same batch.
    const got = await cli(['batches', 'get', String(id)]);
    expect(got.code).toBe(0);
    expect(got.stdout).toContain(`${id}: completed, 12 completed, 0 failed of 12`);
    const listed = await cli(['batches', 'list', '--limit', '5']);
    expect(listed.stdout).toMatch(new RegExp(`^${id}\\tcompleted\\t12\\t0\\t12\\t`, 'm'));
    const dl = await cli(['batches', 'download', String(id), '--output', '-']);
    expect(dl.code).toBe(0);
    expect(dl.stdout).toBe(written);
  });

  it('--model changes only the model: a byte order mark is no reason to skip line 1, a number JSON cannot hold still refused', async () => {
    stack.fake.configure({ provider: 'openai', firstByteMs: 30, chunkMs: 0, tokens: 6 });
    const request = (i: number, extra = '') =>
      `{"custom_id":"m-${i}","method":"POST","url":"/v1/chat/completions","body":{"model":"no-such-model"${extra},"messages":[{"role":"user","content":"bom ${i}"}]}}`;
    // Notepad's UTF-8: a byte order mark, CRLF line ends.
    await writeFile(join(dir, 'bom.jsonl'), `\uFEFF${request(1)}\r\n${request(2)}\r\n${request(3)}\r\n`);
    const ok = await cli(['batches', 'create', 'bom.jsonl', '--model', 'gpt-4o-mini', '--watch']);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(/^batch_\S+: completed, 3 completed, 0 failed of 3$/m);

    // Parsed and written back, 1e400 became null: a request with no cap at all. Sent as written, the
    // gateway refuses it, naming its line.
    await writeFile(join(dir, 'huge.jsonl'), `${request(1)}\n${request(2, ',"max_tokens":1e400')}\n`);
    const refused = await cli(['batches', 'create', 'huge.jsonl', '--model', 'gpt-4o-mini', '--watch']);
    expect(refused.code).toBe(1);
    expect(refused.stdout).toMatch(/^batch_\S+: failed, /m);
    expect(refused.stdout).toMatch(/^error: line 2: .*too large to represent/m);
  });

  it('cancels a running batch; --watch then exits 1 with what finished', async () => {
    stack.fake.configure({ provider: 'openai', firstByteMs: 200, chunkMs: 0, tokens: 6 });
    const input = Array.from({ length: 40 }, (_, i) =>
      JSON.stringify({
        custom_id: `k-${i}`,
        method: 'POST',
        url: '/v1/chat/completions',
        body: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: `q ${i}` }] },
      }),
    ).join('\n');
    await writeFile(join(dir, 'long.jsonl'), input);
    const created = await cli(['batches', 'create', 'long.jsonl']);
    expect(created.code, created.stderr).toBe(0);
    const id = created.stdout.trim();
    expect(id).toMatch(/^batch_/);
    const watching = cli(['batches', 'watch', id]);
    await until(
      async () => {
        const c = (await sy.batches.retrieve(id)).request_counts;
        return c.completed > 0 || undefined;
      },
      { timeoutMs: 30_000, what: 'a line to complete' },
    );
    const cancelled = await cli(['batches', 'cancel', id]);
    expect(cancelled.code, cancelled.stderr).toBe(0);
    expect(cancelled.stdout).toMatch(new RegExp(`^${id}: (cancelling|cancelled)`));
    const w = await watching;
    expect(w.code).toBe(1);
    const final = await sy.batches.retrieve(id);
    expect(final.status).toBe('cancelled');
    const c = final.request_counts;
    expect(w.stdout).toContain(`${id}: cancelled, ${c.completed} completed, ${c.failed} failed of 40`);
    expect(w.stderr).toContain('cancelling');
  });

  it('refuses without an API key, and names another tenant’s batch as not found', async () => {
    const none = await cli(['batches', 'list'], { FAREGATE_API_KEY: '' });
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('FAREGATE_API_KEY');
    const page = await sy.batches.list({ limit: 1 });
    const theirs = await cli(['batches', 'get', String(page.data[0]?.id)], { FAREGATE_API_KEY: otherKey });
    expect(theirs.code).toBe(1);
    expect(theirs.stderr).toContain('error 404');
  });
});

describe('faregate jobs tail', () => {
  it("prints a job's answer as it streams, and fails on another tenant's job", async () => {
    stack.fake.configure({ provider: 'openai', firstByteMs: 0, chunkMs: 5, tokens: 40 });
    const job = await sy.submit({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'tail me' }] });
    const r = await cli(['jobs', 'tail', job.id]);
    expect(r.code, r.stderr).toBe(0);
    const { text } = await sy.result(job.id);
    expect(text.length).toBeGreaterThan(20);
    expect(r.stdout).toBe(`${text}\n`);
    expect(r.stderr).toContain('[running');

    const theirs = await cli(['jobs', 'tail', job.id], { FAREGATE_API_KEY: otherKey });
    expect(theirs.code).toBe(1);
    expect(theirs.stderr).toContain('error 404');
  });
});
