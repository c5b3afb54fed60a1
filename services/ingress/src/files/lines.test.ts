import { describe, expect, it } from 'vitest';
import { linesOf } from './store.ts';

async function lines(chunks: Buffer[]): Promise<string[]> {
  async function* source() {
    yield* chunks;
  }
  const out: string[] = [];
  for await (const l of linesOf(source())) out.push(l);
  return out;
}

describe('linesOf', () => {
  // CRLF and LF endings, a character of 2, 3 and 4 bytes, an empty line, no newline at the end.
  const text = 'first line\r\nsecond é line\n\nthird — €\r\nfourth 😀 end\nlast without newline';
  const want = ['first line', 'second é line', '', 'third — €', 'fourth 😀 end', 'last without newline'];

  it('splits a stream into lines wherever its chunks are cut (inside a character, between \\r and \\n)', async () => {
    const bytes = Buffer.from(text);
    expect(await lines([bytes])).toEqual(want);
    for (let a = 0; a <= bytes.length; a++)
      for (let b = a; b <= bytes.length; b += 3)
        expect(await lines([bytes.subarray(0, a), bytes.subarray(a, b), bytes.subarray(b)])).toEqual(want);
    // One byte at a time.
    expect(await lines([...bytes].map((x) => Buffer.from([x])))).toEqual(want);
  });

  it('ends a file that ends with a newline without an extra empty line', async () => {
    expect(await lines([Buffer.from('a\nb\n')])).toEqual(['a', 'b']);
    expect(await lines([Buffer.from('a\r\n'), Buffer.from('b\r'), Buffer.from('\n')])).toEqual(['a', 'b']);
  });
});
