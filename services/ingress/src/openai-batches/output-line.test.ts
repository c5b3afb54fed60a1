import { describe, expect, it } from 'vitest';
import type { ChatCompletion } from '@faregate/contracts/chat';
import { parseFrame } from '@faregate/contracts/frames';
import { BatchOutputLine } from '@faregate/contracts/openai-batches';
import { lineEndpoint } from './endpoints.ts';
import { completedRaw, endedWith } from './progress.ts';
import { sampleCompletion } from '@faregate/testing/completion';

// An answer whose text looks like the frame's and the output line's own fields.
const sample = sampleCompletion('req_abc');
const result: ChatCompletion = {
  ...sample,
  model: 'openai/gpt-4o-mini',
  provider: 'openai',
  choices: [
    {
      ...sample.choices[0]!,
      message: {
        ...sample.choices[0]!.message,
        content: 'He wrote "type":"done","result":{},"error":null} and "custom_id":"x" then \u2028 left.',
      },
    },
  ],
};
/** A done frame as the frame store writes it (its prefix, then the worker's body). */
const frame = `{"v":1,"job":"req_abc","seq":2,${JSON.stringify({
  type: 'done',
  route: [{ provider: 'openai', model: 'gpt-4o-mini', status: 200, code: 'ok' }],
  result,
}).slice(1)}`;

describe('a completed chat line from its raw done frame', () => {
  const chat = lineEndpoint('/v1/chat/completions');

  it('is the output line the parsed frame gives, with the answer as the worker wrote it', () => {
    expect(parseFrame(frame)?.type).toBe('done');
    const raw = chat.rawAnswer?.(frame);
    expect(raw).toBe(JSON.stringify(result));
    const fast = completedRaw(7, 'batch_req_b_7', 'my "id"\n', 'req_b_7', raw ?? '');
    const parsed = endedWith(7, 'completed', {
      id: 'batch_req_b_7',
      custom_id: 'my "id"\n',
      response: { status_code: 200, request_id: 'req_b_7', body: chat.answer(parseFrame(frame), undefined) },
      error: null,
    });
    const { json: fastJson, ...fastRest } = fast;
    const { json: parsedJson, ...parsedRest } = parsed;
    expect(fastRest).toEqual(parsedRest);
    // The same line (the schema orders keys its own way; the raw answer keeps the worker's order).
    expect(JSON.parse(fastJson ?? '')).toEqual(JSON.parse(parsedJson ?? ''));
    expect(fastJson).toContain(`"body":${JSON.stringify(result)}},"error":null}`);
    expect(BatchOutputLine.parse(JSON.parse(fast.json ?? ''))).toMatchObject({
      custom_id: 'my "id"\n',
      response: {
        status_code: 200,
        body: { choices: [{ message: { content: result.choices[0]?.message.content } }] },
      },
    });
  });

  it('is not taken from anything but a done frame (errors and other layouts are parsed)', () => {
    const error = `{"v":1,"job":"req_abc","seq":2,"type":"error","status":429,"error":{"code":"rate_limited","message":"slow down"}}`;
    expect(chat.rawAnswer?.(error)).toBeUndefined();
    expect(
      chat.rawAnswer?.(`{"v":1,"job":"req_abc","seq":2,"result":${JSON.stringify(result)},"type":"done"}`),
    ).toBeUndefined();
    expect(lineEndpoint('/v1/embeddings').rawAnswer?.(error)).toBeUndefined();
    expect(lineEndpoint('/v1/responses').rawAnswer).toBeUndefined();
  });
});
