import { describe, expect, it } from 'vitest';
import { GatewayError } from '@faregate/contracts/errors';
import { anthropicModel, anthropicPage } from './models-anthropic.ts';

const limits = { context_window: 200_000, max_output_tokens: 64_000 };
const listed = ['a', 'b', 'c', 'd', 'e'].map((id, i) => ({ id, created: 1_700_000_000 + i, ...limits }));
const ids = (q: Record<string, unknown>) => anthropicPage(listed, q).data.map((m) => m.id);
const refusal = (q: Record<string, unknown>) => {
  try {
    anthropicPage(listed, q);
  } catch (e) {
    return e as GatewayError;
  }
  throw new Error('expected a refusal');
};

describe("models in Anthropic's shape", () => {
  it('gives a model its type, display name and an RFC 3339 created_at', () => {
    expect(anthropicModel({ id: 'anthropic/claude-haiku-4-5', created: 1_700_000_000, ...limits })).toEqual({
      type: 'model',
      id: 'anthropic/claude-haiku-4-5',
      display_name: 'anthropic/claude-haiku-4-5',
      created_at: '2023-11-14T22:13:20Z',
      max_input_tokens: 200_000,
      max_tokens: 64_000,
    });
  });

  it('pages forward after a cursor and backward before one', () => {
    expect(anthropicPage(listed, {})).toMatchObject({ has_more: false, first_id: 'a', last_id: 'e' });
    expect(anthropicPage(listed, { limit: '2' })).toMatchObject({
      has_more: true,
      first_id: 'a',
      last_id: 'b',
    });
    expect(ids({ limit: '2', after_id: 'b' })).toEqual(['c', 'd']);
    expect(anthropicPage(listed, { limit: '2', after_id: 'c' })).toMatchObject({ has_more: false });
    expect(anthropicPage(listed, { after_id: 'e' })).toEqual({
      data: [],
      has_more: false,
      first_id: null,
      last_id: null,
    });
    expect(anthropicPage(listed, { limit: '2', before_id: 'e' })).toMatchObject({
      has_more: true,
      first_id: 'c',
      last_id: 'd',
    });
    expect(anthropicPage(listed, { limit: '2', before_id: 'c' })).toMatchObject({ has_more: false });
    expect(ids({ limit: '2', before_id: 'b' })).toEqual(['a']);
    expect(ids({ limit: '1000' })).toEqual(['a', 'b', 'c', 'd', 'e']);
  });

  it('leaves embedding models out of the list, its cursors and its retrieve (a 404)', () => {
    const mixed = [
      { id: 'openai/gpt-4o-mini', created: 1, ...limits, capabilities: ['tools', 'vision'] },
      { id: 'openai/text-embedding-3-small', created: 2, ...limits, capabilities: ['embeddings'] },
      { id: 'gemini/gemini-embedding-001', created: 3, ...limits, capabilities: ['embeddings'] },
      { id: 'anthropic/claude-haiku-4-5', created: 4, ...limits, capabilities: ['tools'] },
      { id: 'auto', created: 5, ...limits, capabilities: ['tools', 'vision'] },
    ];
    expect(anthropicPage(mixed, {}).data.map((m) => m.id)).toEqual([
      'openai/gpt-4o-mini',
      'anthropic/claude-haiku-4-5',
      'auto',
    ]);
    expect(anthropicPage(mixed, { limit: '1', after_id: 'openai/gpt-4o-mini' })).toMatchObject({
      first_id: 'anthropic/claude-haiku-4-5',
      has_more: true,
    });
    expect(() => anthropicPage(mixed, { after_id: 'openai/text-embedding-3-small' })).toThrow(
      expect.objectContaining({ param: 'after_id' }),
    );
    expect(() => anthropicModel(mixed[1] as (typeof mixed)[number])).toThrow(
      expect.objectContaining({ code: 'model_not_found', param: 'model' }),
    );
    expect(anthropicModel(mixed[0] as (typeof mixed)[number]).id).toBe('openai/gpt-4o-mini');
  });

  it.each([
    [{ limit: '0' }, 'limit'],
    [{ limit: '1001' }, 'limit'],
    [{ limit: 'abc' }, 'limit'],
    [{ limit: '1.5' }, 'limit'],
    [{ limit: '' }, 'limit'],
    [{ limit: ['1', '2'] }, 'limit'],
    [{ after_id: 'zz' }, 'after_id'],
    [{ before_id: 'zz' }, 'before_id'],
    [{ after_id: 'a', before_id: 'c' }, 'before_id'],
  ])('refuses %j naming %s', (q, param) => {
    const e = refusal(q);
    expect(e).toBeInstanceOf(GatewayError);
    expect(e.code).toBe('invalid_request_error');
    expect(e.param).toBe(param);
  });
});
