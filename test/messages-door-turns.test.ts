import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Stack, startStack } from './support/stack.ts';

/**
 * The Messages door's turns as Anthropic reads them, against the real services and every provider
 * behind it (outside probe): consecutive same-role turns merged, an empty final assistant turn
 * taken, documents in tool results, and what Anthropic refuses of a whole request refused at the
 * ingress, before queueing, in Anthropic's words and at the caller's paths.
 */
let stack: Stack;
beforeAll(async () => {
  stack = await startStack({ providers: ['openai', 'anthropic', 'gemini'] });
}, 120_000);
afterAll(async () => {
  await stack?.stop();
});

const MODELS = ['openai/gpt-4o-mini', 'anthropic/claude-haiku-4-5', 'gemini/gemini-2.5-flash'] as const;

const post = (body: unknown) =>
  fetch(`${stack.url}/v1/messages`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'anthropic-version': '2023-06-01',
      'x-api-key': stack.apiKey,
    },
    body: JSON.stringify(body),
  });

const t = { name: 't', input_schema: { type: 'object' } };
const use = (id: string) => ({ type: 'tool_use', id, name: 't', input: {} });
const result = (id: string, content: unknown = 'ok') => ({ type: 'tool_result', tool_use_id: id, content });

/** A conversation with `model`: one call (toolu_1) of tool `t`, then the turns given. */
const called = (model: string, ...after: unknown[]) => ({
  model,
  max_tokens: 50,
  tools: [t],
  messages: [{ role: 'user', content: 'x' }, { role: 'assistant', content: [use('toolu_1')] }, ...after],
});

/** The 400's Anthropic error message, and whether a provider was called (the attempts header). */
async function refusal(body: unknown): Promise<{ message: string; attempts: string | null }> {
  const r = await post(body);
  const json = (await r.json()) as { type: string; error: { type: string; message: string } };
  expect(r.status).toBe(400);
  expect(json).toMatchObject({ type: 'error', error: { type: 'invalid_request_error' } });
  return { message: json.error.message, attempts: r.headers.get('x-faregate-attempts') };
}

describe.each(MODELS)('%s behind /v1/messages: turns as Anthropic reads them', (model) => {
  it('serves two assistant turns each with a tool_use, then one turn with both results', async () => {
    const r = await post(
      called(
        model,
        { role: 'assistant', content: [use('toolu_2')] },
        { role: 'user', content: [result('toolu_1'), result('toolu_2')] },
      ),
    );
    expect(r.status).toBe(200);
    expect(await r.json()).toMatchObject({ type: 'message', role: 'assistant' });
  });

  it('serves an empty final assistant turn as no prefill', async () => {
    for (const content of ['', []]) {
      const r = await post({
        model,
        max_tokens: 20,
        messages: [
          { role: 'user', content: 'hi' },
          { role: 'assistant', content },
        ],
      });
      expect(r.status).toBe(200);
    }
  });

  it('carries a text document in a tool result', async () => {
    const doc = { type: 'document', source: { type: 'text', media_type: 'text/plain', data: 'notes' } };
    const r = await post(called(model, { role: 'user', content: [result('toolu_1', [doc])] }));
    expect(r.status).toBe(200);
  });
});

describe("what Anthropic refuses of a whole request: at the ingress, in Anthropic's words", () => {
  const model = 'anthropic/claude-haiku-4-5';

  it('an unanswered tool_use, and a tool_result answering no tool_use', async () => {
    const unanswered = await refusal(called(model, { role: 'user', content: 'go on' }));
    expect(unanswered).toEqual({
      message:
        'messages.2: `tool_use` ids were found without `tool_result` blocks immediately after: toolu_1. Each `tool_use` block must have a corresponding `tool_result` block in the next message.',
      attempts: null,
    });
    for (const m of MODELS) {
      const stray = await refusal({
        model: m,
        max_tokens: 50,
        tools: [t],
        messages: [{ role: 'user', content: [result('zz')] }],
      });
      expect(stray.message).toBe(
        'messages.0.content.0: unexpected `tool_use_id` found in `tool_result` blocks: zz. Each `tool_result` block must have a corresponding `tool_use` block in the previous message.',
      );
      expect(stray.attempts).toBeNull();
    }
  });

  it('tool_choice any without tools; tool names; more than 4 breakpoints; data that is not base64', async () => {
    const user = [{ role: 'user', content: 'x' }];
    expect(
      (await refusal({ model, max_tokens: 5, messages: user, tool_choice: { type: 'any' } })).message,
    ).toBe('tool_choice.type: `any` needs at least one tool in `tools`.');
    expect(
      (await refusal({ model, max_tokens: 5, messages: user, tools: [{ ...t, name: 'a b' }] })).message,
    ).toMatch(/^tools\.0\.name: String should match pattern/);
    expect((await refusal({ model, max_tokens: 5, messages: user, tools: [t, t] })).message).toBe(
      "tools.1.name: Tool names must be unique: 't' is also tools.0.",
    );
    const cc = { type: 'ephemeral' };
    const five = Array.from({ length: 5 }, (_, i) => ({ type: 'text', text: `p${i}`, cache_control: cc }));
    expect(
      (await refusal({ model, max_tokens: 5, messages: [{ role: 'user', content: five }] })).message,
    ).toBe(
      'messages.0.content.4.cache_control: A maximum of 4 blocks with cache_control may be provided. Found 5.',
    );
    const image = { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'not base64!' } };
    expect(
      (await refusal({ model, max_tokens: 5, messages: [{ role: 'user', content: [image] }] })).message,
    ).toMatch(/^messages\.0\.content\.0\.source\.data: invalid base64 data/);
  });

  it("an image in a tool result to Gemini is refused before queueing, at the caller's path", async () => {
    const png = { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'iVBORw0KGgo=' } };
    const r = await refusal(
      called('gemini/gemini-2.5-flash', {
        role: 'user',
        content: [result('toolu_1', [{ type: 'text', text: 'see' }, png])],
      }),
    );
    expect(r).toEqual({
      message:
        "'messages.2.content.0.content.1' is not supported by gemini: it takes only text in a tool result (send an image or a file in a user message).",
      attempts: null,
    });
  });
});
