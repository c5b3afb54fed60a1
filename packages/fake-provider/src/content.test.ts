import { describe, expect, it } from 'vitest';
import { sampleValue } from './content.ts';

describe('sampleValue: what a model following a JSON schema writes', () => {
  it('fills every required key however deep, ends recursive schemas, and writes common formats', () => {
    const nest = (d: number): unknown =>
      d === 0
        ? { type: 'string' }
        : {
            type: 'object',
            properties: { name: { type: 'string' }, child: nest(d - 1) },
            required: ['name', 'child'],
            additionalProperties: false,
          };
    let v = sampleValue(nest(20), nest(20), '', 0) as { name: string; child: unknown };
    for (let d = 20; d > 0; d--) {
      expect(Object.keys(v).sort()).toEqual(['child', 'name']);
      v = v.child as typeof v;
    }
    expect(typeof v).toBe('string');
    const tree = {
      type: 'object',
      properties: { root: { $ref: '#/$defs/node' } },
      required: ['root'],
      $defs: {
        node: {
          type: 'object',
          properties: { v: { type: 'integer' }, kids: { type: 'array', items: { $ref: '#/$defs/node' } } },
          required: ['v', 'kids'],
        },
      },
    };
    expect(sampleValue(tree, tree, '', 0)).toEqual({ root: { v: 4, kids: [{ v: 4, kids: [] }] } });
    expect(sampleValue({ type: 'string', format: 'uuid' }, {}, 'id', 0)).toMatch(/^[0-9a-f-]{36}$/);
    expect(sampleValue({ type: ['null', 'integer'], minimum: 7 }, {}, 'n', 0)).toBe(7);
  });
});
