import { describe, expect, it } from 'vitest';
import type { ChatCompletion } from '@faregate/contracts/chat';
import { doneBody, parseFrame } from '@faregate/contracts/frames';
import type { RouteStep } from '@faregate/contracts/route';
import { rawDone } from './done-frame.ts';

// A text that looks like the frame's own fields: escaped inside a string, it never matches them.
const result: ChatCompletion = {
  id: 'req_abc',
  object: 'chat.completion',
  created: 1_700_000_000,
  model: 'openai/gpt-4o-mini',
  provider: 'openai',
  choices: [
    {
      index: 0,
      message: {
        role: 'assistant',
        content: 'He wrote "type":"done","route":[],"result":{} and left.',
        refusal: null,
        annotations: [],
      },
      logprobs: null,
      finish_reason: 'stop',
    },
  ],
  usage: {
    prompt_tokens: 3,
    completion_tokens: 9,
    total_tokens: 12,
    prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 },
    completion_tokens_details: {
      reasoning_tokens: 0,
      audio_tokens: 0,
      accepted_prediction_tokens: 0,
      rejected_prediction_tokens: 0,
    },
  },
  system_fingerprint: null,
  service_tier: 'default',
};
const route: RouteStep[] = [
  { provider: 'gemini', model: 'gemini-2.5-flash', status: 503, code: 'provider_unavailable' },
  { provider: 'openai', model: 'gpt-4o-mini', status: 200, code: 'ok' },
];
/** As the frame store writes it: its prefix, then the worker's body without its opening brace. */
const stored = (body: object, seq = 2) =>
  `{"v":1,"job":"req_abc","seq":${seq},${JSON.stringify(body).slice(1)}`;

describe('rawDone', () => {
  it('gives the result bytes as written and the route, the same answer the parsed frame gives', () => {
    const raw = stored({ type: 'done', route, result });
    const d = rawDone(raw);
    expect(d?.result).toBe(JSON.stringify(result));
    expect(d?.route).toEqual(route);
    const parsed = parseFrame(raw);
    expect(parsed?.type).toBe('done');
    expect(JSON.parse(d?.result ?? '')).toEqual(parsed?.type === 'done' ? parsed.result : undefined);
  });

  it("reads the frame the worker writes (doneBody: the time it was answered before the result), and a worker's that wrote the time after it", () => {
    // Before: a frame with `at` after the result was not relayed but parsed whole, for every answer.
    const raw = stored(doneBody(route, result, 1_700_000_000_123));
    expect(rawDone(raw)).toEqual({ result: JSON.stringify(result), route });
    expect(rawDone(raw, { route: false })).toEqual({ result: JSON.stringify(result), route: undefined });
    const older = stored({ type: 'done', route, result, at: 1_700_000_000_123 });
    expect(rawDone(older)).toEqual({ result: JSON.stringify(result), route });
    expect(rawDone(older, { route: false })?.result).toBe(JSON.stringify(result));
    // Whatever else comes before the result is left to the parser.
    expect(rawDone(stored({ type: 'done', route, at: '1', result }))).toBeUndefined();
    expect(rawDone(stored({ type: 'done', route, other: 1, result }))).toBeUndefined();
    expect(rawDone(stored({ type: 'done', route, result, at: 'x' }))).toBeUndefined();
  });

  it('takes a done frame without a route', () => {
    const d = rawDone(stored({ type: 'done', result }));
    expect(d).toEqual({ result: JSON.stringify(result), route: undefined });
  });

  it('gives only the answer, the same bytes, when the route is not wanted', () => {
    const raw = stored({ type: 'done', route, result });
    expect(rawDone(raw, { route: false })).toEqual({ result: JSON.stringify(result), route: undefined });
    expect(rawDone(stored({ type: 'done', result }), { route: false })?.result).toBe(JSON.stringify(result));
    // The layout is still checked.
    expect(rawDone(stored({ type: 'done', result, route }), { route: false })).toBeUndefined();
    expect(rawDone(raw.slice(0, -1), { route: false })).toBeUndefined();
  });

  it('gives an embeddings frame’s list the same way, when asked for that type', () => {
    const list = { object: 'list', data: [{ object: 'embedding', index: 0, embedding: 'AACAPw==' }] };
    const raw = stored({ type: 'embeddings', route, result: list });
    expect(rawDone(raw, { type: 'embeddings' })).toEqual({ result: JSON.stringify(list), route });
    expect(rawDone(raw)).toBeUndefined();
    expect(rawDone(stored({ type: 'done', route, result }), { type: 'embeddings' })).toBeUndefined();
    // An older worker's order (the list before the route).
    expect(
      rawDone(stored({ type: 'embeddings', result: list, route }), { type: 'embeddings' }),
    ).toBeUndefined();
  });

  it('leaves every other layout to the parser', () => {
    // An older worker's order (route after the result).
    expect(rawDone(stored({ type: 'done', result, route }))).toBeUndefined();
    expect(
      rawDone(stored({ type: 'error', status: 500, error: { code: 'x', message: 'y' } })),
    ).toBeUndefined();
    expect(rawDone(stored({ type: 'embeddings', route, result: { object: 'list' } }))).toBeUndefined();
    // Another version of the frames.
    expect(rawDone(stored({ type: 'done', route, result }).replace('"v":1', '"v":2'))).toBeUndefined();
    // A route that is not one.
    expect(rawDone(stored({ type: 'done', route: [{ provider: 1 }], result }))).toBeUndefined();
    expect(rawDone(stored({ type: 'done', route: 'openai', result }))).toBeUndefined();
    // Cut short.
    expect(rawDone(stored({ type: 'done', route, result }).slice(0, -1))).toBeUndefined();
  });
});
