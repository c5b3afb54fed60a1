import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { withRule } from './refine.ts';

/** A rule using every way zod's superRefine takes an issue. */
const rule = (v: { a: number; b?: string }, ctx: z.core.$RefinementCtx<{ a: number; b?: string }>) => {
  if (v.a < 0) ctx.addIssue({ code: 'custom', path: ['a'], message: 'negative', params: { verbatim: true } });
  if (v.a === 13) ctx.addIssue('unlucky');
  if (v.a === 7) ctx.addIssue({ code: 'custom', message: 'fatal seven', fatal: true });
  if (v.a === 8) ctx.addIssue({ code: 'custom', message: 'fatal eight', fatal: true, continue: true });
  if (v.b === 'x') ctx.addIssue({ message: 'no code given', path: ['b'] } as never);
};
const base = z.object({ a: z.number(), b: z.string().optional() });

describe('withRule', () => {
  it('parses exactly as superRefine does: data, issues, messages, paths and params', () => {
    const ours = withRule(base, rule);
    const zods = base.superRefine(rule);
    for (const input of [
      { a: 1 },
      { a: -1 },
      { a: 13 },
      { a: 7 },
      { a: 8 },
      { a: -1, b: 'x' },
      { a: 'no' },
      null,
    ]) {
      const r1 = ours.safeParse(input);
      const r2 = zods.safeParse(input);
      expect(r1.success, JSON.stringify(input)).toBe(r2.success);
      if (r1.success && r2.success) expect(r1.data).toEqual(r2.data);
      else expect(r1.error?.issues, JSON.stringify(input)).toEqual(r2.error?.issues);
    }
  });

  it('a fatal issue stops the checks after it, as with superRefine', () => {
    const after = (s: z.ZodType) => s.refine(() => false, 'ran after');
    const ours = after(withRule(base, rule)).safeParse({ a: 7 });
    const zods = after(base.superRefine(rule)).safeParse({ a: 7 });
    expect(ours.error?.issues.map((i) => i.message)).toEqual(['fatal seven']);
    expect(ours.error?.issues).toEqual(zods.error?.issues); // Fatal even when it also says `continue`, as zod has it.
    const eight = after(withRule(base, rule)).safeParse({ a: 8 });
    expect(eight.error?.issues.map((i) => i.message)).toEqual(['fatal eight']);
    expect(eight.error?.issues).toEqual(after(base.superRefine(rule)).safeParse({ a: 8 }).error?.issues);
  });

  it('keeps the schema it refines: a pipe after it, a transform on it', () => {
    const piped = withRule(z.unknown(), (v, ctx) => {
      if (typeof v !== 'object' || v === null) ctx.addIssue({ code: 'custom', message: 'not an object' });
    }).pipe(base);
    expect(piped.safeParse({ a: 2 }).data).toEqual({ a: 2 });
    expect(piped.safeParse(5).error?.issues[0]?.message).toBe('not an object');
    const doubled = withRule(base, rule).transform((v) => v.a * 2);
    expect(doubled.parse({ a: 4 })).toBe(8);
  });
});
