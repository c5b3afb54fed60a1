import type { Frame } from '@faregate/contracts/frames';
import { describe, expect, it } from 'vitest';
import { Assembler } from './assemble.ts';
import { FaregateError } from './errors.ts';

const f = (seq: number, body: Record<string, unknown>) => ({ v: 1, job: 'j', seq, ...body }) as Frame;

describe('Assembler', () => {
  it('discards what came before a reset', () => {
    const a = new Assembler('j');
    a.add(f(1, { type: 'accepted', model: 'm', created: 0 }));
    a.add(f(2, { type: 'delta', text: 'first try ', reasoning: 'hm' }));
    a.add(f(3, { type: 'reset', reason: 'retry', hop: 0, attempt: 2 }));
    a.add(f(4, { type: 'delta', text: 'second ' }));
    a.add(f(5, { type: 'delta', text: 'try' }));
    a.add(f(6, { type: 'done', result: { id: 'j', choices: [{ message: { content: 'second try' } }] } }));
    expect(a.result()).toMatchObject({ id: 'j', text: 'second try', reasoning: '', lastSeq: 6 });
  });

  it('throws the job error with its status', () => {
    const a = new Assembler('j');
    const err = (() => {
      try {
        a.add(
          f(1, {
            type: 'error',
            status: 429,
            error: { code: 'rate_limit_exceeded', message: 'slow down', retryable: true, param: null },
          }),
        );
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(FaregateError);
    expect(err).toMatchObject({
      status: 429,
      code: 'rate_limit_exceeded',
      type: 'rate_limit_error',
      requestId: 'j',
    });
    expect(() => a.result()).toThrow(/not finished/);
  });
});
