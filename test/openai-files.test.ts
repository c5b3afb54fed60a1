const line = (i: number, pad = '') =>
  JSON.stringify({
    custom_id: `r${i}`,
    method: 'POST',
    url: '/v1/chat/completions',
    body: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: `hello ${i}${pad}` }] },
  });
const jsonl = (n: number, pad = '') => `${Array.from({ length: n }, (_, i) => line(i, pad)).join('\n')}\n`;

async function apiError(p: Promise<unknown>) {
  const e = await p.then(
    () => {
      throw new Error('expected an error');
    },
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(OpenAI.APIError);
  return e as InstanceType<typeof OpenAI.APIError>;
}

import { Agent as HttpAgent, request } from 'node:http';
import type { Socket } from 'node:net';
import OpenAI, { toFile } from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Stack, startStack } from './support/stack.ts';
import { adminCall } from './support/calls.ts';
import { until } from '@faregate/testing/env';
import { type Backend, backends } from './support/s3.ts';

/**
 * OpenAI's Files API through the official SDK, against the real ingress, once per storage backend:
 * Postgres (the default) and an S3-compatible server (moto's server mode), each real.
 */
const MAX_BYTES = 12 * 1024 * 1024;
const MAX_LINES = 100;

describe.each(Object.keys(backends))('files stored in %s', (backendName) => {
  let stack: Stack;
  let client: OpenAI;
  let other: OpenAI;
  let backend: Backend;
  const admin = (method: string, path: string, body?: unknown) => adminCall(stack, method, path, body);
  /** One call through `agent` (5 s at most): its status, and the socket it went on. */
  const call = (agent: HttpAgent, method: string, path: string, body?: string, contentType?: string) =>
    new Promise<{ status: number | undefined; socket: Socket | null }>((resolve, reject) => {
      const q = request(
        `${stack.url}${path}`,
        {
          method,
          agent,
          timeout: 5_000,
          headers: {
            authorization: `Bearer ${stack.apiKey}`,
            ...(contentType ? { 'content-type': contentType } : {}),
          },
        },
        (res) => {
          res.resume();
          res.on('end', () => resolve({ status: res.statusCode, socket: q.socket }));
        },
      );
      q.on('timeout', () => q.destroy(new Error(`${method} ${path}: no answer in 5 s`)));
      q.on('error', reject);
      q.end(body);
    });
  const storedIds = () => backend.storedIds(stack);

  beforeAll(async () => {
    backend = await (backends[backendName] as () => Promise<Backend>)();
    stack = await startStack({
      providers: ['openai'],
      ingressEnv: {
        FILE_MAX_BYTES: String(MAX_BYTES),
        FILE_MAX_LINES: String(MAX_LINES),
        // Swept often, so expiry and crash leftovers are seen to go within a test.
        FILES_SWEEP_MS: '150',
        ...backend.env,
      },
    });
    client = new OpenAI({ baseURL: `${stack.url}/v1`, apiKey: stack.apiKey, maxRetries: 0 });
    const acc = await admin('POST', '/admin/v1/accounts', { name: 'other tenant' });
    const k = await admin('POST', '/admin/v1/keys', { account_id: acc.id, name: 'k' });
    other = new OpenAI({ baseURL: `${stack.url}/v1`, apiKey: String(k.key), maxRetries: 0 });
  }, 90_000);
  afterAll(async () => {
    await stack?.stop();
    await backend?.stop();
  });

  it('uploads, lists, retrieves, streams back and deletes a JSONL file', async () => {
    const text = jsonl(5);
    const f = await client.files.create({
      file: await toFile(Buffer.from(text), 'in.jsonl'),
      purpose: 'batch',
    });
    expect(f).toMatchObject({
      object: 'file',
      bytes: Buffer.byteLength(text),
      filename: 'in.jsonl',
      purpose: 'batch',
      status: 'processed',
    });
    expect(f.id).toMatch(/^file_/);
    expect(Math.abs(f.created_at - Date.now() / 1000)).toBeLessThan(60);

    expect(await client.files.retrieve(f.id)).toEqual(f);
    expect(await storedIds()).toContain(f.id);
    const content = await client.files.content(f.id);
    expect(await content.text()).toBe(text);
    expect(content.headers.get('content-disposition')).toBe('attachment; filename="in.jsonl"');
    // A name past ASCII comes back as uploaded, in filename* (RFC 6266).
    const named = await client.files.create({
      file: await toFile(Buffer.from(jsonl(1)), 'données été (1).jsonl'),
      purpose: 'batch',
    });
    expect(named.filename).toBe('données été (1).jsonl');
    const disposition = (await client.files.content(named.id)).headers.get('content-disposition') ?? '';
    expect(disposition).toBe(
      `attachment; filename="donn_es__t___1_.jsonl"; filename*=UTF-8''donn%C3%A9es%20%C3%A9t%C3%A9%20%281%29.jsonl`,
    );
    const exact = /filename\*=UTF-8''(.+)$/.exec(disposition)?.[1] ?? '';
    expect(decodeURIComponent(exact)).toBe(named.filename);
    await client.files.delete(named.id);

    const second = await client.files.create({
      file: await toFile(Buffer.from(jsonl(1)), 'b.jsonl'),
      purpose: 'batch',
    });
    const ids: string[] = [];
    for await (const file of client.files.list({ limit: 1 })) ids.push(file.id);
    expect(ids).toEqual([second.id, f.id]);
    const page = await client.files.list({ limit: 1 });
    expect(page.data.map((x) => x.id)).toEqual([second.id]);
    expect(page.has_more).toBe(true);
    // A query parameter given twice is a 400 saying so (not "expected number, received array").
    const twice = await fetch(`${stack.url}/v1/files?limit=1&limit=2`, {
      headers: { authorization: `Bearer ${stack.apiKey}` },
    });
    expect(twice.status).toBe(400);
    expect(await twice.json()).toEqual({
      error: {
        type: 'invalid_request_error',
        code: 'invalid_request_error',
        param: 'limit',
        message: "The query parameter 'limit' is given more than once; give it once.",
      },
    });

    expect(await client.files.delete(f.id)).toEqual({ id: f.id, object: 'file', deleted: true });
    expect((await apiError(client.files.retrieve(f.id))).status).toBe(404);
    expect(await storedIds()).not.toContain(f.id);
  });

  it('streams a file of several chunks (Postgres rows of 1 MiB, S3 parts of 5 MiB) back byte for byte', async () => {
    const text = jsonl(MAX_LINES, ` ${'x'.repeat(110 * 1024)}`);
    expect(Buffer.byteLength(text)).toBeGreaterThan(10 * 1024 * 1024);
    const f = await client.files.create({
      file: await toFile(Buffer.from(text), 'many.jsonl'),
      purpose: 'batch',
    });
    expect(await (await client.files.content(f.id)).text()).toBe(text);
  });

  it('runs a batch from a stored file and stores its output and error files there', async () => {
    const text = `${line(0)}\n${JSON.stringify({
      custom_id: 'bad-model',
      method: 'POST',
      url: '/v1/chat/completions',
      body: { model: 'no-such-model', messages: [{ role: 'user', content: 'x' }] },
    })}\n${line(2)}\n`;
    const input = await client.files.create({
      file: await toFile(Buffer.from(text), 'b.jsonl'),
      purpose: 'batch',
    });
    const created = await client.batches.create({
      input_file_id: input.id,
      endpoint: '/v1/chat/completions',
      completion_window: '24h',
    });
    const b = await until(
      async () => {
        const x = await client.batches.retrieve(created.id);
        return x.status === 'completed' || x.status === 'failed' ? x : undefined;
      },
      { timeoutMs: 60_000, what: 'the batch to end' },
    );
    expect(b).toMatchObject({ status: 'completed', request_counts: { total: 3, completed: 2, failed: 1 } });
    const out = (await (await client.files.content(b.output_file_id ?? '')).text()).trim().split('\n');
    expect(out.map((l) => JSON.parse(l).custom_id)).toEqual(['r0', 'r2']);
    const err = (await (await client.files.content(b.error_file_id ?? '')).text()).trim().split('\n');
    expect(err.map((l) => JSON.parse(l).custom_id)).toEqual(['bad-model']);
    expect(await storedIds()).toEqual(expect.arrayContaining([input.id, b.output_file_id, b.error_file_id]));
  });

  it("keeps tenants apart: another account's file is a 404 everywhere", async () => {
    const f = await client.files.create({
      file: await toFile(Buffer.from(jsonl(1)), 'mine.jsonl'),
      purpose: 'batch',
    });
    for (const call of [
      () => other.files.retrieve(f.id),
      () => other.files.content(f.id),
      () => other.files.delete(f.id),
    ]) {
      const e = await apiError(call());
      expect(e.status).toBe(404);
      expect(e.error).toMatchObject({ type: 'invalid_request_error' });
    }
    const listed: string[] = [];
    for await (const x of other.files.list()) listed.push(x.id);
    expect(listed).not.toContain(f.id);
    expect((await client.files.retrieve(f.id)).id).toBe(f.id);
  });

  it('refuses a file past the size limit, stores nothing, and answers in OpenAI shape', async () => {
    const before = (await stack.sql.query('SELECT count(*)::int AS n FROM files')).rows[0].n;
    // Few lines, many bytes: the size limit, not the line limit.
    const big = Buffer.from(
      `${JSON.stringify({ custom_id: 'x', pad: 'p'.repeat(MAX_BYTES + 2 * 1024 * 1024) })}\n`,
    );
    const e = await apiError(client.files.create({ file: await toFile(big, 'big.jsonl'), purpose: 'batch' }));
    expect(e.status).toBe(413);
    expect(e.message).toMatch(/too large/);
    expect(e.param).toBe('file');
    const after = (await stack.sql.query('SELECT count(*)::int AS n FROM files')).rows[0].n;
    expect(after).toBe(before);
    const known = new Set(
      (await stack.sql.query<{ id: string }>('SELECT id FROM files')).rows.map((r) => r.id),
    );
    expect((await storedIds()).filter((id) => !known.has(id))).toEqual([]);
  });

  it('refuses a file with too many lines', async () => {
    const e = await apiError(
      client.files.create({
        file: await toFile(Buffer.from(jsonl(MAX_LINES + 1)), 'long.jsonl'),
        purpose: 'batch',
      }),
    );
    expect(e.status).toBe(400);
    expect(e.message).toContain(`more than ${MAX_LINES} lines`);
  });

  it('refuses what is not JSONL: a binary file, another extension, an unknown purpose, no file', async () => {
    const bin = await apiError(
      client.files.create({
        file: await toFile(Buffer.from([0x7b, 0, 1, 2, 0x0a]), 'x.jsonl'),
        purpose: 'batch',
      }),
    );
    expect(bin.status).toBe(400);
    expect(bin.message).toMatch(/not a text file/);
    const ext = await apiError(
      client.files.create({ file: await toFile(Buffer.from(jsonl(1)), 'x.csv'), purpose: 'batch' }),
    );
    expect(ext.error).toMatchObject({ message: 'Invalid file format for Batch API. Must be .jsonl' });
    const purpose = await apiError(
      client.files.create({
        file: await toFile(Buffer.from(jsonl(1)), 'x.jsonl'),
        // A purpose the SDK's types would refuse.
        purpose: '__proto__' as 'batch',
      }),
    );
    expect(purpose.status).toBe(400);
    expect(purpose.param).toBe('purpose');
    const empty = await apiError(
      client.files.create({ file: await toFile(Buffer.from('\n\n'), 'e.jsonl'), purpose: 'batch' }),
    );
    expect(empty.message).toMatch(/empty/);
    const r = await fetch(`${stack.url}/v1/files`, {
      method: 'POST',
      headers: { authorization: `Bearer ${stack.apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ purpose: 'batch' }),
    });
    expect(r.status).toBe(400);
    expect(((await r.json()) as { error: { message: string } }).error.message).toMatch(/multipart/);
  });

  it('expires a file as OpenAI does: expires_after on upload, output_expires_after on a batch; gone at once, then swept', async () => {
    const f = await client.files.create({
      file: await toFile(Buffer.from(jsonl(2)), 'exp.jsonl'),
      purpose: 'batch',
      expires_after: { anchor: 'created_at', seconds: 3600 },
    });
    expect(f.expires_at).toBe(f.created_at + 3600);
    expect((await client.files.retrieve(f.id)).expires_at).toBe(f.created_at + 3600);
    const plain = await client.files.create({
      file: await toFile(Buffer.from(jsonl(2)), 'plain.jsonl'),
      purpose: 'batch',
    });
    expect(plain.expires_at).toBeNull();

    // A batch's output and error files expire as asked.
    const created = await client.batches.create({
      input_file_id: f.id,
      endpoint: '/v1/chat/completions',
      completion_window: '24h',
      output_expires_after: { anchor: 'created_at', seconds: 7200 },
    });
    const b = await until(
      async () => {
        const x = await client.batches.retrieve(created.id);
        return x.status === 'completed' || x.status === 'failed' ? x : undefined;
      },
      { timeoutMs: 60_000, what: 'the batch to end' },
    );
    expect(b.status).toBe('completed');
    const out = await client.files.retrieve(b.output_file_id ?? '');
    expect(out.expires_at).toBe(out.created_at + 7200);

    // Its time comes: from then on it does not exist for its owner, then its record and bytes go.
    await stack.sql.query('UPDATE files SET expires_at = created_at - 1 WHERE id = ANY($1)', [
      [f.id, out.id],
    ]);
    for (const id of [f.id, out.id]) {
      expect((await apiError(client.files.retrieve(id))).status).toBe(404);
      expect((await apiError(client.files.content(id))).status).toBe(404);
    }
    const listed: string[] = [];
    for await (const x of client.files.list()) listed.push(x.id);
    expect(listed).toContain(plain.id);
    expect(listed).not.toContain(f.id);
    expect(listed).not.toContain(out.id);
    const e = await apiError(
      client.batches.create({
        input_file_id: f.id,
        endpoint: '/v1/chat/completions',
        completion_window: '24h',
      }),
    );
    expect(e.status).toBe(404);
    await until(
      async () => {
        const rows = await stack.sql.query('SELECT 1 FROM files WHERE id = ANY($1)', [[f.id, out.id]]);
        const stored = await storedIds();
        return rows.rowCount === 0 && !stored.includes(f.id) && !stored.includes(out.id);
      },
      { timeoutMs: 15_000, what: 'the expired files to be swept' },
    );
    expect(await storedIds()).toContain(plain.id);
  });

  it('refuses an expiry OpenAI refuses, naming the parameter', async () => {
    const file = await toFile(Buffer.from(jsonl(1)), 'x.jsonl');
    for (const [expires_after, param] of [
      [{ anchor: 'created_at', seconds: 60 }, 'expires_after.seconds'],
      [{ anchor: 'created_at', seconds: 2_592_001 }, 'expires_after.seconds'],
      [{ anchor: 'last_active_at', seconds: 3600 }, 'expires_after.anchor'],
    ] as const) {
      const e = await apiError(
        client.files.create({
          file,
          purpose: 'batch',
          expires_after: expires_after as unknown as { anchor: 'created_at'; seconds: number },
        }),
      );
      expect(e.status).toBe(400);
      expect(e.param).toBe(param);
    }
    const form = new FormData();
    form.append('purpose', 'batch');
    form.append('expires_after[seconds]', '3600');
    form.append('file', new Blob([`${line(0)}\n`]), 'a.jsonl');
    const r = await fetch(`${stack.url}/v1/files`, {
      method: 'POST',
      headers: { authorization: `Bearer ${stack.apiKey}` },
      body: form,
    });
    expect(r.status).toBe(400);
    expect(((await r.json()) as { error: { param: string } }).error.param).toBe('expires_after.anchor');
    const input = await client.files.create({ file, purpose: 'batch' });
    const be = await apiError(
      client.batches.create({
        input_file_id: input.id,
        endpoint: '/v1/chat/completions',
        completion_window: '24h',
        output_expires_after: { anchor: 'created_at', seconds: 5 },
      }),
    );
    expect(be.status).toBe(400);
  });

  it('sweeps what a crash leaves: bytes whose record is gone, an upload cut short an hour ago', async () => {
    const orphan = await client.files.create({
      file: await toFile(Buffer.from(jsonl(2)), 'orphan.jsonl'),
      purpose: 'batch',
    });
    const cut = await client.files.create({
      file: await toFile(Buffer.from(jsonl(2)), 'cut.jsonl'),
      purpose: 'batch',
    });
    const kept = await client.files.create({
      file: await toFile(Buffer.from(jsonl(2)), 'kept.jsonl'),
      purpose: 'batch',
    });
    // A process died between deleting the record and the bytes; another died mid-upload. And
    // something else keeps bytes under the same prefix: not a file of ours, never swept.
    await backend.putStray(stack, 'notes.txt');
    await stack.sql.query('DELETE FROM files WHERE id = $1', [orphan.id]);
    await stack.sql.query(
      `UPDATE files SET status = 'uploading', created_at = created_at - 7200 WHERE id = $1`,
      [cut.id],
    );
    await until(
      async () => {
        const stored = await storedIds();
        const rows = await stack.sql.query('SELECT 1 FROM files WHERE id = $1', [cut.id]);
        return !stored.includes(orphan.id) && !stored.includes(cut.id) && rows.rowCount === 0;
      },
      { timeoutMs: 15_000, what: 'the leftovers to be swept' },
    );
    expect(await storedIds()).toEqual(expect.arrayContaining([kept.id, 'notes.txt']));
    expect(await (await client.files.content(kept.id)).text()).toBe(jsonl(2));
  });

  it('refuses a form with two files or too many fields as a 400 naming what to send', async () => {
    const one = new Blob([`${JSON.stringify({ custom_id: 'a' })}\n`]);
    const two = new FormData();
    two.append('purpose', 'batch');
    two.append('file', one, 'a.jsonl');
    two.append('file', one, 'b.jsonl');
    const many = new FormData();
    for (let i = 0; i < 6; i++) many.append(`extra${i}`, 'x');
    many.append('purpose', 'batch');
    many.append('file', one, 'a.jsonl');
    for (const form of [two, many]) {
      const r = await fetch(`${stack.url}/v1/files`, {
        method: 'POST',
        headers: { authorization: `Bearer ${stack.apiKey}` },
        body: form,
      });
      expect(r.status).toBe(400);
      const body = (await r.json()) as { error: { type: string; message: string } };
      expect(body.error.type).toBe('invalid_request_error');
      expect(body.error.message).toMatch(/'file'/);
    }
    // One unknown field, or one given twice: refused too, naming it; nothing stored.
    const before = (await client.files.list()).data.length;
    const extra = new FormData();
    extra.append('purpose', 'batch');
    extra.append('foo', 'bar');
    extra.append('file', one, 'a.jsonl');
    const twice = new FormData();
    twice.append('purpose', 'assistants');
    twice.append('purpose', 'batch');
    twice.append('file', one, 'a.jsonl');
    for (const [form, param] of [
      [extra, 'foo'],
      [twice, 'purpose'],
    ] as const) {
      const r = await fetch(`${stack.url}/v1/files`, {
        method: 'POST',
        headers: { authorization: `Bearer ${stack.apiKey}` },
        body: form,
      });
      expect(r.status).toBe(400);
      expect(((await r.json()) as { error: { param: string } }).error.param).toBe(param);
    }
    expect((await client.files.list()).data.length).toBe(before);
  });

  it('refuses a malformed multipart body as a 400 naming the problem, and keeps nothing of it', async () => {
    const rowsBefore = (await stack.sql.query('SELECT count(*)::int AS n FROM files')).rows[0].n;
    const storedBefore = await storedIds();
    const head = (name: string, filename?: string) =>
      `Content-Disposition: form-data; name="${name}"${filename ? `; filename="${filename}"` : ''}\r\n\r\n`;
    const purpose = `--xx\r\n${head('purpose')}batch\r\n`;
    const file = `--xx\r\n${head('file', 'a.jsonl')}${jsonl(3)}`;
    const cases: Array<[contentType: string, body: string, message: RegExp]> = [
      ['multipart/form-data', 'garbage', /no boundary/],
      ['multipart/form-data; boundary=', 'garbage', /no boundary/],
      ['multipart/form-data; boundary=""', `${purpose}${file}\r\n--xx--\r\n`, /no boundary/],
      [`multipart/form-data; boundary=${'b'.repeat(300)}`, 'garbage', /boundary is too long/],
      ['multipart/form-data; boundary=zz', 'garbage', /ends before its closing boundary '--zz--'/],
      // A whole form but for its closing delimiter: cut inside the file, or after it.
      ['multipart/form-data; boundary=xx', `${purpose}${file}`, /ends before its closing boundary '--xx--'/],
      ['multipart/form-data; boundary=xx', `${purpose}${file}\r\n--xx\r\n`, /closing boundary '--xx--'/],
      ['multipart/form-data; boundary=xx', `${file}\r\n--xx\r\n${head('purpose')}bat`, /closing boundary/],
      // A part whose headers never end.
      [
        'multipart/form-data; boundary=xx',
        `--xx\r\nContent-Disposition: form-data; name="purpose"`,
        /closing/,
      ],
    ];
    for (const [contentType, body, message] of cases) {
      const r = await fetch(`${stack.url}/v1/files`, {
        method: 'POST',
        headers: { authorization: `Bearer ${stack.apiKey}`, 'content-type': contentType },
        body,
      });
      const answer = (await r.json()) as { error: Record<string, unknown> };
      expect({ status: r.status, contentType }).toEqual({ status: 400, contentType });
      expect(answer).toEqual({
        error: {
          type: 'invalid_request_error',
          code: 'invalid_request_error',
          param: null,
          message: expect.stringMatching(/^Malformed multipart\/form-data body/),
        },
      });
      expect(answer.error.message, contentType).toMatch(message);
    }
    // What the parser refuses in a well-delimited form is a 400 too (was a 406 for the JSON field).
    for (const [part, message] of [
      [`--xx\r\n${head('__proto__')}x\r\n`, /'__proto__'/],
      [
        `--xx\r\nContent-Disposition: form-data; name="purpose"\r\nContent-Type: application/json\r\n\r\n{bad\r\n`,
        /not valid JSON/,
      ],
    ] as const) {
      const r = await fetch(`${stack.url}/v1/files`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${stack.apiKey}`,
          'content-type': 'multipart/form-data; boundary=xx',
        },
        body: `${part}${file}\r\n--xx--\r\n`,
      });
      expect(r.status).toBe(400);
      const answer = (await r.json()) as { error: { type: string; message: string } };
      expect(answer.error.type).toBe('invalid_request_error');
      expect(answer.error.message).toMatch(message);
    }
    // Nothing of the cut uploads is kept: no record, no bytes.
    expect((await stack.sql.query('SELECT count(*)::int AS n FROM files')).rows[0].n).toBe(rowsBefore);
    expect((await storedIds()).sort()).toEqual(storedBefore.sort());
    // The same form, whole, is taken.
    const whole = await fetch(`${stack.url}/v1/files`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${stack.apiKey}`,
        'content-type': 'multipart/form-data; boundary=xx',
      },
      body: `${purpose}${file}\r\n--xx--\r\n`,
    });
    expect(whole.status).toBe(200);
    const f = (await whole.json()) as { id: string; bytes: number };
    expect(f.bytes).toBe(Buffer.byteLength(jsonl(3)));
    await client.files.delete(f.id);
  });

  it('answers a storage failure during an upload as the server error it is (not a bad form), and reads the form on', async () => {
    if (backendName !== 'postgres') return;
    // The store fails (as a full disk would) on the bytes of one upload: the form itself is fine.
    await stack.sql.query(`
      CREATE FUNCTION fail_chunk() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN RAISE EXCEPTION 'could not extend file' USING ERRCODE = '53100'; END $$;
      CREATE TRIGGER fail_chunk BEFORE INSERT ON file_chunks FOR EACH ROW
        WHEN (position('STORE-FAILS' in convert_from(NEW.data, 'UTF8')) > 0) EXECUTE FUNCTION fail_chunk();`);
    try {
      const rowsBefore = (await stack.sql.query('SELECT count(*)::int AS n FROM files')).rows[0].n;
      const e = await apiError(
        client.files.create({
          // Past a chunk (1 MiB): the store fails while the form is still arriving, which then stops.
          file: await toFile(Buffer.from(jsonl(40, ` STORE-FAILS ${'x'.repeat(100 * 1024)}`)), 'x.jsonl'),
          purpose: 'batch',
        }),
      );
      expect(e.status).toBe(500);
      expect(e.error).toMatchObject({ type: 'server_error' });
      expect((await stack.sql.query('SELECT count(*)::int AS n FROM files')).rows[0].n).toBe(rowsBefore);

      // The rest of the form is read on: the connection then serves the next request. Left unread, the
      // client's next call on it (the OpenAI SDK's, kept alive) waited forever behind the body.
      const agent = new HttpAgent({ keepAlive: true, maxSockets: 1 });
      try {
        const form = `--xx\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n--xx\r\nContent-Disposition: form-data; name="file"; filename="x.jsonl"\r\n\r\n${jsonl(40, ` STORE-FAILS ${'x'.repeat(100 * 1024)}`)}\r\n--xx--\r\n`;
        const failed = await call(agent, 'POST', '/v1/files', form, 'multipart/form-data; boundary=xx');
        expect(failed.status).toBe(500);
        const next = await call(agent, 'GET', '/v1/files');
        expect(next.status).toBe(200);
        expect(next.socket).toBe(failed.socket);
      } finally {
        agent.destroy();
      }
    } finally {
      await stack.sql.query('DROP TRIGGER fail_chunk ON file_chunks; DROP FUNCTION fail_chunk();');
    }
  });

  it("takes bodiless calls as OpenAI's Python SDK sends them: content-type JSON and an empty body", async () => {
    const f = await client.files.create({
      file: await toFile(
        Buffer.from(
          `${JSON.stringify({ custom_id: 'a', method: 'POST', url: '/v1/chat/completions', body: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] } })}\n`,
        ),
        'one.jsonl',
      ),
      purpose: 'batch',
    });
    const headers = { authorization: `Bearer ${stack.apiKey}`, 'content-type': 'application/json' };
    const b = await client.batches.create({
      input_file_id: f.id,
      endpoint: '/v1/chat/completions',
      completion_window: '24h',
    });
    const cancel = await fetch(`${stack.url}/v1/batches/${b.id}/cancel`, {
      method: 'POST',
      headers,
      body: '',
    });
    expect(cancel.status).toBe(200);
    expect(((await cancel.json()) as { id: string }).id).toBe(b.id);
    const del = await fetch(`${stack.url}/v1/files/${f.id}`, { method: 'DELETE', headers, body: '' });
    expect(del.status).toBe(200);
    expect(await del.json()).toEqual({ id: f.id, object: 'file', deleted: true });
    // A body that must be there still must: an empty one is named as missing, not as bad JSON.
    const create = await fetch(`${stack.url}/v1/batches`, { method: 'POST', headers, body: '' });
    expect(create.status).toBe(400);
    expect(((await create.json()) as { error: { message: string } }).error.message).toMatch(/JSON object/);
    // A key named __proto__ is refused as such, not as unparsable JSON.
    const proto = await fetch(`${stack.url}/v1/batches`, {
      method: 'POST',
      headers,
      body: '{"input_file_id":"file-x","endpoint":"/v1/chat/completions","completion_window":"24h","metadata":{"__proto__":"x"}}',
    });
    expect(proto.status).toBe(400);
    expect(((await proto.json()) as { error: { message: string } }).error.message).toMatch(/__proto__/);
  });

  it('needs a valid key, and treats hostile ids as unknown', async () => {
    const r = await fetch(`${stack.url}/v1/files`);
    expect(r.status).toBe(401);
    for (const id of ['..%2Ffiles', '__proto__', 'file_%00', `file_${'a'.repeat(300)}`]) {
      const res = await fetch(`${stack.url}/v1/files/${id}`, {
        headers: { authorization: `Bearer ${stack.apiKey}` },
      });
      expect([400, 404, 414]).toContain(res.status);
      expect(((await res.json()) as { error: { type: string } }).error.type).toBe('invalid_request_error');
    }
  });
});
