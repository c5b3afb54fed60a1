import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Stack, startStack } from './support/stack.ts';

/**
 * OpenAI's "Request too large … on tokens per min": a request that alone needs more than the
 * provider's per-minute tokens is a 429 no wait cures (#14 item 2). The gateway neither retries it
 * nor pauses the pool on it: the caller hears at once, after one upstream call, and the next request
 * is served.
 */

let stack: Stack;
let client: OpenAI;

beforeAll(async () => {
  stack = await startStack({ providers: ['openai'] });
  client = new OpenAI({ apiKey: stack.apiKey, baseURL: `${stack.url}/v1`, maxRetries: 0 });
}, 120_000);

afterAll(async () => {
  await stack?.stop();
});

const upstream = () => stack.fake.calls().filter((c) => c.provider === 'openai' && c.model !== null);

describe('a request larger than the provider allows in a minute', () => {
  it('is answered at once with the provider 429 after one call, no retry and no pause for the others', async () => {
    // 10 requests a minute: the fake allows 10,000 tokens a minute, and this prompt is ~12,500.
    stack.fake.configure({ provider: 'openai', rpm: 10 });
    stack.fake.clearCalls();
    const e = await client.chat.completions
      .create({ model: 'openai/gpt-4o-mini', messages: [{ role: 'user', content: 'word '.repeat(10_000) }] })
      .then(
        () => undefined,
        (err: unknown) => err,
      );
    expect(e).toBeInstanceOf(OpenAI.RateLimitError);
    const err = e as InstanceType<typeof OpenAI.RateLimitError>;
    expect(err.message).toMatch(/too large/i);
    // Waiting would not help: no retry-after is promised.
    expect(err.headers?.get('retry-after')).toBeNull();
    const calls = upstream();
    expect(calls.map((c) => c.status)).toEqual([429]);

    // The pool is not paused: a small request is served at once.
    const ok = await client.chat.completions.create({
      model: 'openai/gpt-4o-mini',
      messages: [{ role: 'user', content: 'small' }],
    });
    expect(ok.choices[0]?.message.content).toBeTruthy();
    expect(upstream().map((c) => c.status)).toEqual([429, 200]);
  });
});
