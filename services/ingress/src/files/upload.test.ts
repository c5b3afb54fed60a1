import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { checkedUpload, type UploadCheck } from './upload.ts';

async function check(chunks: Buffer[]): Promise<UploadCheck> {
  const c: UploadCheck = { bytes: 0, lines: 0 };
  for await (const _ of checkedUpload(Readable.from(chunks), { maxBytes: 1_000_000, maxLines: 100 }, c)) {
    // drained
  }
  return c;
}

describe('checkedUpload', () => {
  it('takes UTF-8 whose multi-byte characters are split across chunks', async () => {
    const text = Buffer.from('{"custom_id":"é漢字🙂"}\n');
    const cut = text.indexOf(0xe6) + 1; // inside 漢
    const c = await check([text.subarray(0, cut), text.subarray(cut)]);
    expect(c.refused).toBeUndefined();
    expect(c.lines).toBe(1);
  });

  it('refuses bytes that are not UTF-8, and a file ending inside a character', async () => {
    const latin1 = await check([Buffer.from('{"custom_id":"caf'), Buffer.from([0xe9]), Buffer.from('"}\n')]);
    expect(latin1.refused?.message).toMatch(/not valid UTF-8/);
    expect(latin1.refused?.param).toBe('file');
    const cutShort = await check([Buffer.from('{"a":"x"}\n'), Buffer.from([0xe6, 0xbc])]);
    expect(cutShort.refused?.message).toMatch(/not valid UTF-8/);
  });
});
