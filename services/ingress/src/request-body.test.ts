import { describe, expect, it } from 'vitest';
import { GatewayError } from '@faregate/contracts/errors';
import { MAX_JSON_DEPTH, parseJsonText } from './request-body.ts';

const refusal = (text: string) => {
  try {
    parseJsonText(text, 'The body');
  } catch (e) {
    return e instanceof GatewayError ? e.message : `other: ${(e as Error).name}`;
  }
  return 'parsed';
};

describe('parseJsonText: one parser for every JSON the gateway takes', () => {
  it.each([
    '{"__proto__":{"admin":true}}',
    '{"a":{"__proto__":1}}',
    '{"\\u005f\\u005fproto\\u005F\\u005F":{}}',
    '{"__pr\\u006fto__":{}}',
    '{"constructor":{"prototype":{"x":1}}}',
    '{"\\u0063onstructor":{"prototype":{}}}',
  ])('refuses a prototype key, however it is escaped: %s', (text) => {
    expect(refusal(text)).toContain("'__proto__'");
  });

  it.each([
    '{"max_tokens":1e400}',
    '{"max_tokens":1e0400}',
    `{"n":${'9'.repeat(400)}}`,
    '[-1E+309]',
    // A long mantissa with a short exponent: 10^249 × 10^80.
    `{"n":${'9'.repeat(250)}e80}`,
    `{"n":${'9'.repeat(250)}.5E+60}`,
  ])('refuses a number out of range: %s', (text) => {
    expect(refusal(text)).toContain('too large to represent');
  });

  it('takes everything else as it is: escaped non-ASCII text, look-alike keys, big finite numbers', () => {
    expect(parseJsonText('{"content":"\\u00e9t\\u00e9 \\ud83d\\ude00"}')).toEqual({ content: 'été 😀' });
    expect(parseJsonText(`[${'9'.repeat(200)}e99, 1e-400]`)).toEqual([Number(`${'9'.repeat(200)}e99`), 0]);
    expect(parseJsonText('{"proto":1,"constructor":"x","__proto":2,"e":1e308}')).toEqual({
      proto: 1,
      constructor: 'x',
      __proto: 2,
      e: 1e308,
    });
    // A string that only mentions the key is text, not a key.
    expect(parseJsonText('{"content":"__proto__ and constructor.prototype"}')).toEqual({
      content: '__proto__ and constructor.prototype',
    });
  });

  it('refuses JSON nested deeper than MAX_JSON_DEPTH (a walk after it would overflow the stack), takes it at the limit', () => {
    const nest = (d: number) => `${'{"a":'.repeat(d)}1${'}'.repeat(d)}`;
    expect(refusal(nest(5000))).toContain(`more than ${MAX_JSON_DEPTH} levels deep`);
    expect(refusal(`[${'['.repeat(3000)}${']'.repeat(3000)}]`)).toContain('levels deep');
    expect(refusal(`{"__proto_":${nest(MAX_JSON_DEPTH)}}`)).toContain('The body nests');
    expect(refusal(nest(MAX_JSON_DEPTH))).toBe('parsed');
  });

  it('text that is not JSON is a SyntaxError', () => {
    expect(refusal('{"a":')).toBe('other: SyntaxError');
  });
});
