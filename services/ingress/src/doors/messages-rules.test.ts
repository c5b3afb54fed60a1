import { describe, expect, it } from 'vitest';
import { chatRefusal } from '@faregate/catalog/capabilities';
import { AnthropicRequest } from '@faregate/contracts/anthropic';
import { GatewayError } from '@faregate/contracts/errors';
import { fromZod } from '../plugins/errors.ts';
import { type DoorNames, MESSAGES_PARAMS, promptOf, toChatRequest } from './messages.ts';
import { inDoorTerms } from './shared.ts';

/**
 * Anthropic's rules for a Messages request as a whole, as the door applies them for every target
 * (outside probe of `/v1/messages`): merged turns, an empty prefill, tool pairs, tool names,
 * caching breakpoints, base64, documents in tool results, and the caller's paths in refusals.
 */
const base = { model: 'gemini/gemini-2.5-flash', max_tokens: 50 };
const t = { name: 't', input_schema: { type: 'object' } };
const use = (id: string) => ({ type: 'tool_use', id, name: 't', input: {} });
const result = (id: string, content: unknown = 'ok') => ({ type: 'tool_result', tool_use_id: id, content });
/** A conversation with one call (toolu_1) of tool `t`, then the turns given. */
const called = (...after: unknown[]) => ({
  ...base,
  tools: [t],
  messages: [{ role: 'user', content: 'x' }, { role: 'assistant', content: [use('toolu_1')] }, ...after],
});
const png = { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'iVBORw0KGgo=' } };

/** The chat request a body becomes, or the 400 it gets (its param and message). */
function door(body: unknown, names?: DoorNames) {
  const r = AnthropicRequest.safeParse(body);
  try {
    if (!r.success) throw fromZod(r.error);
    return { chat: toChatRequest(r.data, names) };
  } catch (e) {
    if (!(e instanceof GatewayError)) throw e;
    return { param: e.param, message: e.message };
  }
}

describe('turns as Anthropic reads them', () => {
  it('merges consecutive same-role turns: two tool_use turns answered by one turn of results', () => {
    const { chat } = door({
      ...base,
      tools: [t],
      messages: [
        { role: 'user', content: 'x' },
        { role: 'assistant', content: [use('toolu_1')] },
        { role: 'assistant', content: [use('toolu_2')] },
        { role: 'user', content: [result('toolu_1'), result('toolu_2')] },
      ],
    });
    expect(chat?.messages).toEqual([
      { role: 'user', content: 'x' },
      {
        role: 'assistant',
        content: null,
        tool_calls: [
          { id: 'toolu_1', type: 'function', function: { name: 't', arguments: '{}' } },
          { id: 'toolu_2', type: 'function', function: { name: 't', arguments: '{}' } },
        ],
      },
      { role: 'tool', tool_call_id: 'toolu_1', content: 'ok' },
      { role: 'tool', tool_call_id: 'toolu_2', content: 'ok' },
    ]);
  });

  it('merges text turns in order, a string turn as a text block', () => {
    const { chat } = door({
      ...base,
      messages: [
        { role: 'user', content: 'one' },
        { role: 'user', content: [{ type: 'text', text: 'two' }] },
        { role: 'assistant', content: 'a' },
        { role: 'assistant', content: [{ type: 'text', text: 'b' }] },
        { role: 'user', content: 'three' },
      ],
    });
    expect(chat?.messages).toEqual([
      {
        role: 'user',
        content: [
          { type: 'text', text: 'one' },
          { type: 'text', text: 'two' },
        ],
      },
      { role: 'assistant', content: 'ab' },
      { role: 'user', content: 'three' },
    ]);
  });

  it('an empty final assistant turn (the optional prefill, left empty) is left out, for every target', () => {
    for (const content of ['', [], [{ type: 'text', text: '' }]]) {
      const { chat } = door({
        ...base,
        model: 'anthropic/claude-haiku-4-5',
        messages: [
          { role: 'user', content: 'x' },
          { role: 'assistant', content },
        ],
      });
      expect(chat?.messages).toEqual([{ role: 'user', content: 'x' }]);
      // Nothing left for Anthropic's rule against empty turns to refuse.
      expect(chat && chatRefusal('anthropic', 'anthropic', chat)).toBeUndefined();
    }
    // A prefill with text is kept.
    const { chat } = door({
      ...base,
      messages: [
        { role: 'user', content: 'x' },
        { role: 'assistant', content: 'The answer is' },
      ],
    });
    expect(chat?.messages.at(-1)).toEqual({ role: 'assistant', content: 'The answer is' });
  });
});

describe('tool calls and results, paired as Anthropic pairs them', () => {
  it("an unanswered tool_use is refused in Anthropic's words, at the turn that should answer it", () => {
    expect(door(called({ role: 'user', content: 'go on' }))).toEqual({
      param: 'messages.2',
      message:
        'messages.2: `tool_use` ids were found without `tool_result` blocks immediately after: toolu_1. Each `tool_use` block must have a corresponding `tool_result` block in the next message.',
    });
    // A call in the last turn: nothing can answer it.
    expect(door(called()).param).toBe('messages.1');
  });

  it('a tool_result that answers no tool_use of the turn before is refused, naming the block', () => {
    expect(door({ ...base, tools: [t], messages: [{ role: 'user', content: [result('zz')] }] })).toEqual({
      param: 'messages.0.content.0',
      message:
        'messages.0.content.0: unexpected `tool_use_id` found in `tool_result` blocks: zz. Each `tool_result` block must have a corresponding `tool_use` block in the previous message.',
    });
    // A call of an earlier turn, not the one before.
    expect(
      door(
        called(
          { role: 'user', content: [result('toolu_1')] },
          { role: 'assistant', content: 'done' },
          { role: 'user', content: [{ type: 'text', text: 'more' }, result('toolu_1')] },
        ),
      ).param,
    ).toBe('messages.4.content.1');
  });

  it("a tool_use id used twice, in a turn or across the conversation, is refused in Anthropic's words at the second", () => {
    expect(
      door({
        ...base,
        tools: [t],
        messages: [
          { role: 'user', content: 'x' },
          { role: 'assistant', content: [use('toolu_1'), use('toolu_1')] },
          { role: 'user', content: [result('toolu_1')] },
        ],
      }),
    ).toEqual({
      param: 'messages.1.content.1',
      message: 'messages.1.content.1: `tool_use` ids must be unique',
    });
    expect(
      door(
        called(
          { role: 'user', content: [result('toolu_1')] },
          { role: 'assistant', content: [{ type: 'text', text: 'again' }, use('toolu_1')] },
          { role: 'user', content: [result('toolu_1')] },
        ),
      ).param,
    ).toBe('messages.3.content.1');
  });

  it("two tool_result blocks for one tool_use are refused in Anthropic's words, naming the second", () => {
    expect(door(called({ role: 'user', content: [result('toolu_1'), result('toolu_1', 'again')] }))).toEqual({
      param: 'messages.2.content.1',
      message:
        'messages.2.content.1: each `tool_use` must have a single result. Found multiple `tool_result` blocks with id: toolu_1',
    });
  });

  it('a final assistant turn (prefill) ending in whitespace is refused as Anthropic refuses it; inner whitespace passes', () => {
    const refused = {
      param: 'messages',
      message: 'messages: final assistant content cannot end with trailing whitespace',
    };
    const msgs = (content: unknown) => ({
      ...base,
      messages: [
        { role: 'user', content: 'x' },
        { role: 'assistant', content },
      ],
    });
    expect(door(msgs('ok  '))).toEqual(refused);
    expect(
      door(
        msgs([
          { type: 'text', text: 'a' },
          { type: 'text', text: 'ok\n' },
        ]),
      ),
    ).toEqual(refused);
    expect(door(msgs('  ok')).chat).toBeDefined();
    // Not the final turn: whitespace at the end of an earlier assistant turn is the model's own text.
    expect(
      door({
        ...base,
        messages: [
          { role: 'user', content: 'x' },
          { role: 'assistant', content: 'ok  ' },
          { role: 'user', content: 'y' },
        ],
      }).chat,
    ).toBeDefined();
  });

  it("tool_choice any without tools, or a tool not in tools, is refused by Anthropic's names", () => {
    const msgs = [{ role: 'user', content: 'x' }];
    expect(door({ ...base, messages: msgs, tool_choice: { type: 'any' } })).toEqual({
      param: 'tool_choice.type',
      message: 'tool_choice.type: `any` needs at least one tool in `tools`.',
    });
    expect(door({ ...base, tools: [t], messages: msgs, tool_choice: { type: 'tool', name: 'u' } })).toEqual({
      param: 'tool_choice.name',
      message: "tool_choice.name: no tool named 'u' in `tools`.",
    });
    expect(door({ ...base, messages: msgs, tool_choice: { type: 'none' } }).chat?.tool_choice).toBe('none');
  });
});

describe('what Anthropic refuses in tools, breakpoints and images', () => {
  const msgs = [{ role: 'user', content: 'x' }];

  it('a tool name outside ^[a-zA-Z0-9_-]{1,64}$, or given twice, is refused naming the tool', () => {
    expect(door({ ...base, messages: msgs, tools: [t, { ...t, name: 'bad name!' }] })).toEqual({
      param: 'tools.1.name',
      message: expect.stringMatching(
        /^tools\.1\.name: String should match pattern '\^\[a-zA-Z0-9_-\]\{1,64\}\$'/,
      ),
    });
    expect(door({ ...base, messages: msgs, tools: [t, { ...t, name: 'u' }, t] })).toEqual({
      param: 'tools.2.name',
      message: "tools.2.name: Tool names must be unique: 't' is also tools.0.",
    });
    expect(door({ ...base, messages: msgs, tools: [t, { ...t, name: 'get_weather-2' }] }).chat).toBeDefined();
    // Past 64 characters, the same refusal at its path (not the schema's "Too big").
    expect(door({ ...base, messages: msgs, tools: [{ ...t, name: 'n'.repeat(65) }] })).toEqual({
      param: 'tools.0.name',
      message: expect.stringMatching(/^tools\.0\.name: String should match pattern/),
    });
  });

  it('more than 4 cache_control breakpoints are refused, naming the fifth, as Anthropic counts them', () => {
    const cc = { type: 'ephemeral' };
    const body = (results: number) => ({
      ...base,
      system: [{ type: 'text', text: 's', cache_control: cc }],
      tools: [{ ...t, cache_control: cc }],
      messages: [
        { role: 'user', content: [{ type: 'text', text: 'x', cache_control: cc }] },
        { role: 'assistant', content: [use('toolu_1')] },
        {
          role: 'user',
          content: [
            result(
              'toolu_1',
              Array.from({ length: results }, () => ({ type: 'text', text: 'r', cache_control: cc })),
            ),
          ],
        },
      ],
    });
    expect(door(body(1)).chat).toBeDefined();
    expect(door(body(2))).toEqual({
      param: 'messages.2.content.0.content.1.cache_control',
      message:
        'messages.2.content.0.content.1.cache_control: A maximum of 4 blocks with cache_control may be provided. Found 5.',
    });
  });

  it('image and PDF data that is not base64 is refused naming it; base64 passes', () => {
    const image = (data: string) => ({
      ...base,
      messages: [
        {
          role: 'user',
          content: [{ type: 'image', source: { type: 'base64', media_type: 'image/png', data } }],
        },
      ],
    });
    for (const data of ['not base64!', 'AAA', 'AA=A', 'AAAA====', 'AAAAA===']) {
      expect(door(image(data))).toEqual({
        param: 'messages.0.content.0.source.data',
        message: expect.stringMatching(/^messages\.0\.content\.0\.source\.data: invalid base64 data/),
      });
    }
    for (const data of ['AAAA', 'iVBORw0KGgo=', 'iVBORw0KGg==', 'a+b/'])
      expect(door(image(data)).chat).toBeDefined();
    const pdf = door({
      ...base,
      messages: [
        {
          role: 'user',
          content: [
            { type: 'text', text: 'read' },
            { type: 'document', source: { type: 'base64', media_type: 'application/pdf', data: '%PDF-1.4' } },
          ],
        },
      ],
    });
    expect(pdf.param).toBe('messages.0.content.1.source.data');
  });
});

describe('documents in tool results, and refusals at the caller’s paths', () => {
  const conversation = (content: unknown[]) =>
    called({ role: 'user', content: [result('toolu_1', content)] });

  it('carries a document in a tool result as it carries one elsewhere', () => {
    const { chat } = door(
      conversation([
        { type: 'text', text: 'found' },
        { type: 'document', source: { type: 'text', media_type: 'text/plain', data: 'notes' }, title: 'N' },
        { type: 'document', source: { type: 'base64', media_type: 'application/pdf', data: 'JVBERi0=' } },
      ]),
    );
    expect(chat?.messages[2]).toEqual({
      role: 'tool',
      tool_call_id: 'toolu_1',
      content: [
        { type: 'text', text: 'found' },
        { type: 'text', text: 'Document title: N' },
        { type: 'text', text: 'notes' },
        { type: 'file', file: { file_data: 'data:application/pdf;base64,JVBERi0=' } },
      ],
    });
  });

  it("a tool result's image or PDF Gemini cannot take is refused at the ingress, at the caller's path", () => {
    // The route's names: the door's fields and where each content part came from.
    const refusal = (content: unknown[]) => {
      const names: DoorNames = { ...MESSAGES_PARAMS };
      const { chat } = door({ ...conversation(content), system: 'be brief' }, names);
      if (!chat) throw new Error('refused by the door');
      const r = chatRefusal('gemini', 'gemini', chat);
      if (!r) return undefined;
      const e = inDoorTerms(new GatewayError({ code: 'invalid_request_error', ...r }), names) as GatewayError;
      return { param: e.param, message: e.message };
    };
    expect(refusal([{ type: 'text', text: 'see' }, png])).toEqual({
      param: 'messages.2.content.0.content.1',
      message:
        "'messages.2.content.0.content.1' is not supported by gemini: it takes only text in a tool result (send an image or a file in a user message).",
    });
    expect(
      refusal([
        { type: 'document', source: { type: 'text', media_type: 'text/plain', data: 'notes' }, context: 'c' },
        { type: 'document', source: { type: 'base64', media_type: 'application/pdf', data: 'JVBERi0=' } },
      ])?.param,
    ).toBe('messages.2.content.0.content.1');
    expect(refusal([{ type: 'text', text: 'see' }])).toBeUndefined();
  });

  it('count_tokens takes the same rules (promptOf)', () => {
    const r = AnthropicRequest.safeParse({ ...base, messages: [{ role: 'user', content: [result('zz')] }] });
    expect(r.success).toBe(true);
    if (r.success)
      expect(() => promptOf(r.data)).toThrow(expect.objectContaining({ param: 'messages.0.content.0' }));
  });
});
