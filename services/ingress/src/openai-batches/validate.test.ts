import { describe, expect, it } from 'vitest';
import { type ValidLine, validateLines } from './validate.ts';

const line = (id: string) =>
  JSON.stringify({
    custom_id: id,
    method: 'POST',
    url: '/v1/chat/completions',
    body: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: id }] },
  });

async function run(text: string | Buffer, maxLineBytes?: number) {
  const valid: ValidLine[] = [];
  async function* source() {
    yield Buffer.isBuffer(text) ? text : Buffer.from(text);
  }
  const r = await validateLines(
    source(),
    '/v1/chat/completions',
    async (ls) => {
      valid.push(...ls);
    },
    { maxLineBytes },
  );
  return { ...r, valid };
}

describe('validateLines', () => {
  it('refuses a line over the endpoint body limit, counting UTF-8 bytes, as the endpoint refuses such a body', async () => {
    const limit = line('b').length + 1;
    // 'é' is two bytes: a line of as many characters as 'b''s is over the limit in bytes.
    const ok = await run(`${line('a')}\n${line('b')}\n`, limit);
    expect(ok.errors).toEqual([]);
    expect(ok.valid.map((v) => v.customId)).toEqual(['a', 'b']);
    const r = await run(`${line('a')}\n${line('b')}\n${line('é')}\n${line('ccc')}\n`, limit);
    expect(r.errors).toMatchObject([
      { code: 'request_too_large', line: 3 },
      { code: 'request_too_large', line: 4 },
    ]);
    expect(r.errors[0]?.message).toContain(`at most ${limit} bytes`);
  });

  it('reads a file that opens with a UTF-8 byte order mark (Notepad, PowerShell) like one without', async () => {
    const bom = Buffer.concat([
      Buffer.from([0xef, 0xbb, 0xbf]),
      Buffer.from(`${line('a')}\r\n${line('b')}\r\n`),
    ]);
    const r = await run(bom);
    expect(r.errors).toEqual([]);
    expect(r.valid.map((v) => v.customId)).toEqual(['a', 'b']);
    // Only the file's first bytes: a mark inside the file is not JSON.
    const inner = await run(`${line('a')}\n\uFEFF${line('b')}\n`);
    expect(inner.errors).toMatchObject([{ code: 'invalid_json_line', line: 2 }]);
  });

  it('refuses a line with a prototype key or a number out of range, as the doors refuse such a body', async () => {
    const body = (extra: string) =>
      `{"custom_id":"x${extra.length}","method":"POST","url":"/v1/chat/completions","body":{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]${extra}}}`;
    const r = await run(
      [
        line('ok'),
        body(',"metadata":{"__proto__":"x"}'),
        body(',"metadata":{"\\u005f_proto__":"x"}'),
        body(',"tools":[{"constructor":{"prototype":{}}}]'),
        // Stored, Infinity would become null: a line run without the cap it asked for.
        body(',"max_tokens":1e400'),
        body(`,"max_tokens":1${'0'.repeat(400)}`),
        // Words and numbers that only look suspect.
        body(',"metadata":{"note":"prototype e123 constructor"},"max_tokens":1e2'),
      ].join('\n'),
    );
    const kind = (m: string) =>
      m.includes("'__proto__'") ? 'prototype' : m.includes('too large') ? 'range' : m;
    expect(r.errors.map((e) => [e.line, e.code, kind(e.message)])).toEqual([
      [2, 'invalid_request', 'prototype'],
      [3, 'invalid_request', 'prototype'],
      [4, 'invalid_request', 'prototype'],
      [5, 'invalid_request', 'range'],
      [6, 'invalid_request', 'range'],
    ]);
    expect(r.errors[0]?.message).toMatch(/^This line has a property named '__proto__'/);
    // Line 7 (only looks suspect) and line 1 pass: the errors name lines 2-6 alone.
  });

  it('refuses, naming the line, what Postgres cannot store or the gateway cannot walk: NUL characters, deep nesting', async () => {
    const body = (extra: string, id = 'x') =>
      `{"custom_id":"${id}","method":"POST","url":"/v1/chat/completions","body":{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]${extra}}}`;
    const deep = `${'{"a":'.repeat(5000)}1${'}'.repeat(5000)}`;
    const r = await run(
      [
        line('ok'),
        body(',"user":"a\\u0000b"', 'nul'),
        body('', 'id\\u0000'),
        body(`,"response_format":{"type":"json_schema","json_schema":{"name":"x","schema":${deep}}}`, 'deep'),
        // An escaped backslash before u0000 is text, not a NUL.
        body(',"user":"a\\\\u0000b"', 'text'),
      ].join('\n'),
    );
    expect(
      r.errors.map((e) => [
        e.line,
        e.code,
        /NUL/.test(e.message) ? 'nul' : /levels deep/.test(e.message) ? 'deep' : e.message,
      ]),
    ).toEqual([
      [2, 'invalid_request', 'nul'],
      [3, 'invalid_request', 'nul'],
      [4, 'invalid_request', 'deep'],
    ]);
  });

  it('refuses, naming the line, a lone UTF-16 surrogate (jsonb cannot store it) in a value, a key or the custom_id; a pair passes', async () => {
    const body = (extra: string, id = 'x') =>
      `{"custom_id":"${id}","method":"POST","url":"/v1/chat/completions","body":{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]${extra}}}`;
    // A pair, escaped or as the character itself; an escaped backslash before ud800 is text.
    const pairs = [
      body(',"user":"\\ud83d\\ude00 😀"', 'pair'),
      body(',"user":"a\\\\ud800b"', 'text'),
      body(',"metadata":{"\\uD83D\\uDE00":"\\\\\\ud83d\\ude00"}', 'pair-key'),
    ];
    const r = await run(
      [
        line('ok'),
        body(',"user":"a\\ud800b"', 'high'),
        body(',"user":"a\\uDC00b"', 'low'),
        body(',"metadata":{"k\\ud83d":"v"}', 'key'),
        body('', 'id\\udbff'),
        // A low surrogate before a high one: lone both.
        body(',"user":"\\udc00\\ud800"', 'reversed'),
        // An escaped backslash, then a lone surrogate.
        body(',"user":"\\\\\\ud800"', 'after-backslash'),
        ...pairs,
      ].join('\n'),
    );
    expect(r.errors.map((e) => [e.line, e.code, e.param])).toEqual(
      [2, 3, 4, 5, 6, 7].map((n) => [n, 'invalid_request', null]),
    );
    expect(r.errors[0]?.message).toBe(
      'This line contains a lone UTF-16 surrogate (such as \\ud800 with no low surrogate after it), which cannot be stored.',
    );
    // The valid lines alone are stored, as they were sent.
    const ok = await run([line('ok'), ...pairs].join('\n'));
    expect(ok.errors).toEqual([]);
    expect(ok.valid.map((v) => JSON.parse(v.body).user ?? JSON.parse(v.body).metadata)).toEqual([
      undefined,
      '😀 😀',
      'a\\ud800b',
      { '😀': '\\😀' },
    ]);
  });

  it('skips blank lines as the upload counts them: spaces, tabs and CRs only; other whitespace is not JSON', async () => {
    const r = await run(`${line('a')}\n \t\r\n\n${line('b')}\n`);
    expect(r.errors).toEqual([]);
    expect(r.valid.map((v) => v.customId)).toEqual(['a', 'b']);
    for (const odd of ['\u00a0', '\ufeff', '\f', '\v', '\u2028']) {
      const bad = await run(`${line('a')}\n${odd}\n${line('b')}\n`);
      expect(bad.errors).toMatchObject([{ code: 'invalid_json_line', line: 2 }]);
    }
  });

  it('names a line that is JSON but not an object plainly', async () => {
    const r = await run(`${line('a')}\n[1,2]\n42\nnull\n"text"\n`);
    expect(r.errors.map((e) => [e.line, e.message])).toEqual(
      [2, 3, 4, 5].map((n) => [n, 'This line must be a JSON object with custom_id, method, url and body.']),
    );
  });

  it('finds repeated custom_ids, short and long alike, and takes no long id for a short one', async () => {
    const long = (c: string) => c.repeat(300);
    const r = await run(
      [line('a'), line(long('x')), line('b'), line(long('x')), line('a'), line(long('y'))].join('\n'),
    );
    expect(r.errors.map((e) => [e.code, e.line])).toEqual([
      ['duplicate_custom_id', 4],
      ['duplicate_custom_id', 5],
    ]);
    // Ids that look like what the check keeps of another id are ids like any other.
    const { createHash } = await import('node:crypto');
    const digest = createHash('sha256').update(long('z')).digest('base64');
    const ok = await run(
      [line(long('z')), line(`#${digest}`), line(`=${long('z').slice(0, 10)}`)].join('\n'),
    );
    expect(ok.errors).toEqual([]);
    expect(ok.valid).toHaveLength(3);
  });

  it("gives the batch's model: the first line that names one (a string), null when none does", async () => {
    const named = (id: string, model: unknown) =>
      JSON.stringify({ ...JSON.parse(line(id)), body: { model, messages: [{ role: 'user', content: id }] } });
    const noModel = JSON.stringify({ ...JSON.parse(line('n')), body: { messages: [] } });
    expect((await run([line('a'), named('b', 'other-model')].join('\n'))).model).toBe('gpt-4o-mini');
    expect(
      (await run([noModel, named('x', 7), named('e', ''), named('b', 'other-model'), line('c')].join('\n')))
        .model,
    ).toBe('other-model');
    expect((await run(noModel)).model).toBeNull();
    expect((await run(named('long', 'm'.repeat(500)))).model).toBe('m'.repeat(200));
    // Cut at a character: an emoji across the cut is left out whole.
    expect((await run(named('emoji', `${'m'.repeat(199)}😀tail`))).model).toBe('m'.repeat(199));
  });

  it('a custom_id repeated after a line that was wrong otherwise is reported too', async () => {
    const wrong = (id: string, change: Record<string, unknown>) =>
      JSON.stringify({ ...JSON.parse(line(id)), ...change });
    const r = await run(
      [
        wrong('a', { url: '/v1/embeddings' }),
        wrong('b', { method: 'GET' }),
        wrong('c', { body: 'text' }),
        wrong('d', { method: undefined }),
        line('a'),
        line('b'),
        line('c'),
        line('d'),
      ].join('\n'),
    );
    expect(r.errors.map((e) => [e.line, e.code, e.param])).toEqual([
      [1, 'invalid_url', 'url'],
      [2, 'invalid_method', 'method'],
      [3, 'invalid_request', 'body'],
      [4, 'missing_required_parameter', 'method'],
      [5, 'duplicate_custom_id', 'custom_id'],
      [6, 'duplicate_custom_id', 'custom_id'],
      [7, 'duplicate_custom_id', 'custom_id'],
      [8, 'duplicate_custom_id', 'custom_id'],
    ]);
    expect(r.errors[3]?.message).toBe("Missing required parameter: 'method'.");
  });
});
