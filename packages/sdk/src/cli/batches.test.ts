import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { withModel, withModelSet } from './batches.ts';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'faregate-with-model-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** `withModel` over a file of these bytes: what it writes. */
async function copied(bytes: Buffer | string, model = 'gpt-4o-mini'): Promise<Buffer> {
  const from = join(dir, 'in.jsonl');
  const to = join(dir, 'out.jsonl');
  await writeFile(from, bytes);
  await withModel(from, to, model);
  return readFile(to);
}

const M = JSON.stringify('gpt-4o-mini');

describe('batches create --model (withModel)', () => {
  it('sets the model of every line of a file opening with a byte order mark, the first included', async () => {
    const line = (i: number) =>
      JSON.stringify({
        custom_id: `r${i}`,
        method: 'POST',
        url: '/v1/chat/completions',
        body: { model: 'theirs', messages: [{ role: 'user', content: `q ${i}` }] },
      });
    const out = await copied(`\uFEFF${line(1)}\n${line(2)}\n`);
    const lines = out.toString('utf8').split('\n');
    expect(lines).toHaveLength(3);
    expect(lines[2]).toBe('');
    expect(out[0]).toBe(0x7b);
    expect(lines.slice(0, 2).map((l) => JSON.parse(l).body.model)).toEqual(['gpt-4o-mini', 'gpt-4o-mini']);
    expect(lines[0]).toBe(line(1).replace('"theirs"', M));
  });

  it('changes nothing but the model: numbers JSON cannot hold, big integers, spacing, escapes stay as written', async () => {
    const lines = [
      // A cap JSON.parse reads as Infinity (written back: null, no cap at all): the gateway refuses it.
      '{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{"model":"x","max_tokens":1e400,"messages":[]}}',
      // An integer past 2^53, a float written its own way, a key escaped, spaces kept.
      '{ "custom_id" : "b", "method":"POST", "url":"/v1/chat/completions", "body" : { "seed": 9007199254740993, "temperature": 1.50, "mod\\u0065l" : "x" , "messages": [ ] } }',
      // "model" elsewhere (a message's text, metadata) is not the request's model.
      '{"custom_id":"c","method":"POST","url":"/v1/chat/completions","body":{"metadata":{"model":"keep"},"messages":[{"role":"user","content":"\\"model\\": \\"keep\\" }"}],"model":"x"}}',
    ];
    const out = (await copied(`${lines.join('\n')}\n`)).toString('utf8').split('\n');
    expect(out[0]).toBe(lines[0]?.replace('"model":"x"', `"model":${M}`));
    expect(out[1]).toBe(lines[1]?.replace('"mod\\u0065l" : "x"', `"mod\\u0065l" : ${M}`));
    expect(out[2]).toBe(lines[2]?.replace(/"model":"x"}}$/, `"model":${M}}}`));
    expect(out[1]).toContain('9007199254740993');
    expect(out[1]).toContain('1.50');
  });

  it('sets every model a repeated key could mean, and adds one where there is none', async () => {
    expect(withModelSet('{"body":{"model":"a","n":1,"model":"b"}}', M)).toBe(
      `{"body":{"model":${M},"n":1,"model":${M}}}`,
    );
    expect(withModelSet('{"body":{"model":"a"},"x":1,"body":{"n":1}}', M)).toBe(
      `{"body":{"model":${M}},"x":1,"body":{"model":${M},"n":1}}`,
    );
    expect(withModelSet('{"custom_id":"e","body":{ }}', M)).toBe(`{"custom_id":"e","body":{"model":${M} }}`);
    expect(withModelSet('{"body":{"model":{"nested":["}",{"a":"]"}]},"n":[1,{"model":2}]}}', M)).toBe(
      `{"body":{"model":${M},"n":[1,{"model":2}]}}`,
    );
    expect(JSON.parse(withModelSet('{"body":{"model":null,"x":true}}', '"m\\"q"') ?? '').body.model).toBe(
      'm"q',
    );
  });

  it('copies what is not a JSON request as it is, for the gateway to name', async () => {
    for (const line of [
      'not json',
      '[1,2]',
      '{"body":"text"}',
      '{"body":[1]}',
      '{"custom_id":"x"}',
      '{"a":1',
    ]) {
      expect(withModelSet(line, M)).toBeUndefined();
    }
    // Not UTF-8: the gateway refuses the file as such; decoded here it would become U+FFFD.
    const latin1 = Buffer.from('{"custom_id":"caf\u00e9","body":{"model":"x"}}\n', 'latin1');
    const body = Buffer.concat([
      Buffer.from('not json\n\n{"body":{"model":"x"}}\r\n'),
      latin1,
      Buffer.from('{"body":{"model":"y"}}'),
    ]);
    expect(await copied(body)).toEqual(
      Buffer.concat([
        Buffer.from(`not json\n\n{"body":{"model":${M}}}\r\n`),
        latin1,
        Buffer.from(`{"body":{"model":${M}}}`),
      ]),
    );
  });

  it('reads a file in chunks, lines spanning them', async () => {
    const line = JSON.stringify({ custom_id: 'big', body: { model: 'x', pad: 'é'.repeat(200_000) } });
    const out = (await copied(`${line}\n${line}`)).toString('utf8');
    expect(out).toBe(`${line.replace('"x"', M)}\n${line.replace('"x"', M)}`);
  });
});
