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
    expect(a.result().choices).toEqual([{ index: 0, text: 'second try', reasoning: '' }]);
  });

  it('assembles each choice of an n > 1 answer apart (deltas tagged with their choice), reset clears them all', () => {
    const a = new Assembler('j');
    a.add(f(1, { type: 'delta', text: 'lost' }));
    a.add(f(2, { type: 'delta', choice: 1, text: 'lost too' }));
    a.add(f(3, { type: 'reset', reason: 'retry', hop: 0, attempt: 2 }));
    a.add(f(4, { type: 'delta', text: 'Hel', reasoning: 'a' }));
    a.add(f(5, { type: 'delta', choice: 1, text: 'Bon' }));
    a.add(f(6, { type: 'delta', choice: 1, text: 'jour', reasoning: 'b' }));
    a.add(f(7, { type: 'delta', text: 'lo' }));
    const choices = [
      { index: 0, message: { role: 'assistant', content: 'Hello' } },
      { index: 1, message: { role: 'assistant', content: 'Bonjour' } },
      { index: 2, message: { role: 'assistant', content: '' } },
    ];
    a.add(f(8, { type: 'done', result: { id: 'j', choices } }));
    expect(a.result()).toMatchObject({
      text: 'Hello',
      reasoning: 'a',
      choices: [
        { index: 0, text: 'Hello', reasoning: 'a' },
        { index: 1, text: 'Bonjour', reasoning: 'b' },
        { index: 2, text: '', reasoning: '' },
      ],
    });
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
