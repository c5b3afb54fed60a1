import type { ChatRequest } from '@faregate/contracts/chat';
import { describe, expect, it } from 'vitest';
import type { ProviderConfig } from '../types.ts';
import { buildAnthropicBody } from './request.ts';

const config: ProviderConfig = { id: 'anthropic', kind: 'anthropic', baseUrl: 'https://x/', apiKeys: ['k'] };
const build = (req: Partial<ChatRequest>) =>
  buildAnthropicBody(
    { model: 'claude-haiku-4-5', messages: [{ role: 'user', content: 'hi' }], ...req },
    { model: 'claude-haiku-4-5', stream: false, config, apiKey: 'k' },
  );

describe('anthropic request: strict tools, document titles', () => {
  it("passes a tool's strict: true as Anthropic's strict tool use (false is the default: left out)", () => {
    const tool = (strict?: boolean) => ({
      type: 'function' as const,
      function: { name: 'f', parameters: { type: 'object' }, ...(strict === undefined ? {} : { strict }) },
    });
    const body = build({ tools: [tool(true), tool(false), tool()] });
    expect(body.tools).toEqual([
      { name: 'f', input_schema: { type: 'object' }, strict: true },
      { name: 'f', input_schema: { type: 'object' } },
      { name: 'f', input_schema: { type: 'object' } },
    ]);
  });

  it("gives a PDF file part's name as the document's title", () => {
    const body = build({
      messages: [
        {
          role: 'user',
          content: [
            {
              type: 'file',
              file: { file_data: 'data:application/pdf;base64,JVBERi0=', filename: 'Q3 report' },
            },
            { type: 'file', file: { file_data: 'data:application/pdf;base64,JVBERi0=' } },
          ],
        },
      ],
    });
    const source = { type: 'base64', media_type: 'application/pdf', data: 'JVBERi0=' };
    expect((body.messages as Array<{ content: unknown }>)[0]?.content).toEqual([
      { type: 'document', source, title: 'Q3 report' },
      { type: 'document', source },
    ]);
  });
});

describe("anthropic request: tool_choice 'none'", () => {
  it('sends the tools, their breakpoints and tool_choice none with a tool-use conversation', () => {
    const body = build({
      tools: [
        {
          type: 'function',
          cache_control: { type: 'ephemeral' },
          function: { name: 't', parameters: { type: 'object' } },
        },
      ],
      tool_choice: 'none',
      messages: [
        { role: 'user', content: 'x' },
        {
          role: 'assistant',
          content: null,
          tool_calls: [{ id: 'toolu_1', type: 'function', function: { name: 't', arguments: '{}' } }],
        },
        { role: 'tool', tool_call_id: 'toolu_1', content: 'ok' },
      ],
    });
    expect(body.tools).toEqual([
      { name: 't', input_schema: { type: 'object' }, cache_control: { type: 'ephemeral' } },
    ]);
    expect(body.tool_choice).toEqual({ type: 'none' });
  });
});
