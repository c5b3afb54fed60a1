import { describe, expect, it } from 'vitest';
import type { ChatCompletionChunk } from '@faregate/contracts/chat';
import type { Frame } from '@faregate/contracts/frames';
import { sampleCompletion } from '@faregate/testing/completion';
import { ChunkWriter } from './sse.ts';

const at = { v: 1 as const, job: 'req_1' };
/** The chunks of SSE text (`[DONE]` left out). */
const chunks = (sse: string): ChatCompletionChunk[] =>
  sse
    .split('\n\n')
    .filter((e) => e.startsWith('data: {'))
    .map((e) => JSON.parse(e.slice(6)) as ChatCompletionChunk);
const deltas = (sse: string) => chunks(sse).map((c) => c.choices[0]?.delta);

describe('ChunkWriter, a request that used legacy functions', () => {
  it('streams the first tool call as delta.function_call: its name with "" arguments (with the role, in one chunk, as OpenAI), then the argument pieces', () => {
    const w = new ChunkWriter('req_1', 0, false, true);
    const first: Frame = {
      ...at,
      seq: 1,
      type: 'delta',
      tool_calls: [
        { index: 0, id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"ci' } },
        // Another call (a provider that made two): not the answer's.
        { index: 1, id: 'call_2', type: 'function', function: { name: 'get_time', arguments: '{}' } },
      ],
    };
    const second: Frame = {
      ...at,
      seq: 2,
      type: 'delta',
      tool_calls: [{ index: 0, function: { arguments: 'ty":"Oslo"}' } }],
    };
    expect([...deltas(w.frame(first)), ...deltas(w.frame(second))]).toEqual([
      { role: 'assistant', content: null, function_call: { name: 'get_weather', arguments: '' } },
      { function_call: { arguments: '{"ci' } },
      { function_call: { arguments: 'ty":"Oslo"}' } },
    ]);
    const result = sampleCompletion();
    const choice = result.choices[0] as (typeof result.choices)[number];
    const done: Frame = {
      ...at,
      seq: 3,
      type: 'done',
      result: {
        ...result,
        choices: [
          {
            ...choice,
            message: {
              ...choice.message,
              content: null,
              function_call: { name: 'get_weather', arguments: '{"city":"Oslo"}' },
            },
            finish_reason: 'function_call',
          },
        ],
      },
    };
    // The call went out whole already: only the finish.
    const end = chunks(w.frame(done));
    expect(end.map((c) => c.choices[0]?.delta)).toEqual([{}]);
    expect(end[0]?.choices[0]?.finish_reason).toBe('function_call');
  });

  it('a call that came only with the result (no deltas) goes out from it', () => {
    const w = new ChunkWriter('req_1', 0, false, true);
    const result = sampleCompletion();
    const choice = result.choices[0] as (typeof result.choices)[number];
    const done: Frame = {
      ...at,
      seq: 1,
      type: 'done',
      result: {
        ...result,
        choices: [
          {
            ...choice,
            message: {
              ...choice.message,
              content: null,
              function_call: { name: 'get_weather', arguments: '{}' },
            },
            finish_reason: 'function_call',
          },
        ],
      },
    };
    const out = chunks(w.frame(done));
    expect(out.map((c) => c.choices[0]?.delta)).toEqual([
      { role: 'assistant', content: null, function_call: { name: 'get_weather', arguments: '' } },
      { function_call: { arguments: '{}' } },
      {},
    ]);
    expect(out.at(-1)?.choices[0]?.finish_reason).toBe('function_call');
  });

  it('without the mark, tool calls stream as tool_calls, the first with the role in one chunk (as OpenAI)', () => {
    const w = new ChunkWriter('req_1', 0, false);
    const f: Frame = {
      ...at,
      seq: 1,
      type: 'delta',
      tool_calls: [
        { index: 0, id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{}' } },
      ],
    };
    expect(deltas(w.frame(f))).toEqual([
      { role: 'assistant', content: null, tool_calls: f.type === 'delta' ? f.tool_calls : [] },
    ]);
  });
});

describe('ChunkWriter, the last chunk of a choice', () => {
  it('carries the stop sequence that ended it (`stop_reason`), as the whole answer does', () => {
    const result = sampleCompletion();
    const choice = result.choices[0] as (typeof result.choices)[number];
    const done = (stop?: string): Frame => ({
      ...at,
      seq: 1,
      type: 'done',
      result: {
        ...result,
        choices: [{ ...choice, finish_reason: 'stop', ...(stop === undefined ? {} : { stop_reason: stop }) }],
      },
    });
    const last = (f: Frame) => chunks(new ChunkWriter('req_1', 0, false).frame(f)).at(-1)?.choices[0];
    expect(last(done('market'))).toMatchObject({ finish_reason: 'stop', stop_reason: 'market' });
    expect(last(done())).not.toHaveProperty('stop_reason');
  });
});
