import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jobApi } from './support/jobs.ts';
import { type Stack, startStack } from './support/stack.ts';

/**
 * A 429 storm costs the provider little and the caller little: an interactive request waits a
 * provider's 429 out at most RATE_LIMIT_RETRIES (2) times within its patience, then falls back or
 * gets the 429 with its retry-after; at most 3 upstream calls per 429 the caller sees.
 */

let stack: Stack;
let client: OpenAI;

beforeAll(async () => {
  const configPath = join(tmpdir(), `fg-storm-${process.pid}-${Date.now()}.json`);
  writeFileSync(
    configPath,
    JSON.stringify({ fallbacks: { 'anthropic/claude-haiku-4-5': ['openai/gpt-4o-mini'] } }),
  );
  stack = await startStack({
    providers: ['openai', 'anthropic'],
    env: { FAREGATE_CONFIG: configPath, WORKER_ATTEMPTS: '3' },
  });
  client = new OpenAI({ apiKey: stack.apiKey, baseURL: `${stack.url}/v1`, maxRetries: 0 });
}, 120_000);

afterAll(async () => {
  await stack?.stop();
});

const ask = (content: string) => [{ role: 'user' as const, content }];
const calls = (provider: string) =>
  stack.fake.calls().filter((c) => c.provider === provider && c.model !== null);
const storm = (provider: 'openai' | 'anthropic', n: number, retryAfterMs: number) =>
  stack.fake.script(
    provider,
    Array.from({ length: n }, () => ({ fault: '429' as const, retryAfterMs })),
  );

describe('a 429 storm', () => {
  it('the caller gets the 429 with retry-after after at most 3 upstream calls, within its patience', async () => {
    storm('openai', 20, 300);
    stack.fake.clearCalls();
    const started = Date.now();
    const err = (await client.chat.completions
      .create({ model: 'openai/gpt-4o-mini', messages: ask('storm, no fallback') })
      .catch((e: unknown) => e)) as InstanceType<typeof OpenAI.APIError>;
    const tookMs = Date.now() - started;
    expect(err).toBeInstanceOf(OpenAI.RateLimitError);
    expect(err.headers?.get('retry-after')).toBeTruthy();
    expect(calls('openai')).toHaveLength(3);
    expect(err.headers?.get('x-faregate-attempts')).toBe('openai:429,openai:429,openai:429');
    // Well within the default patience (5 s): two waits of ~300 ms.
    expect(tookMs).toBeLessThan(5_000);
    stack.fake.reset();
  });

  it('falls back after at most 3 calls to the rate-limited provider', async () => {
    storm('anthropic', 20, 300);
    stack.fake.clearCalls();
    const { data, response } = await client.chat.completions
      .create({ model: 'anthropic/claude-haiku-4-5', messages: ask('storm, then fall back') })
      .withResponse();
    expect(data.model).toBe('openai/gpt-4o-mini');
    expect(calls('anthropic')).toHaveLength(3);
    expect(response.headers.get('x-faregate-attempts')).toBe(
      'anthropic:429,anthropic:429,anthropic:429,openai:ok',
    );
    stack.fake.reset();
  });

  it('an async job has no such patience: it waits the storm out and completes', async () => {
    storm('openai', 3, 200);
    stack.fake.clearCalls();
    const jobs = jobApi(stack.url);
    const id = await jobs.submit(stack.apiKey, 'wait it out', 'openai/gpt-4o-mini');
    const job = await jobs.finished(stack.apiKey, id);
    expect(job.status).toBe('completed');
    expect(calls('openai')).toHaveLength(4);
    stack.fake.reset();
  });

  it('a pool paused past the patience sends the next request on to its fallback at once, with no call to the paused provider', async () => {
    storm('anthropic', 1, 20_000);
    stack.fake.clearCalls();
    // The 429 pauses the anthropic pool for 20 s; this request falls back at once.
    const first = await client.chat.completions
      .create({ model: 'anthropic/claude-haiku-4-5', messages: ask('pause the pool') })
      .withResponse();
    expect(first.data.model).toBe('openai/gpt-4o-mini');
    stack.fake.reset();
    stack.fake.clearCalls();
    // The next one finds the pool paused: not waited (20 s > the 5 s patience), not called.
    const started = Date.now();
    const next = await client.chat.completions
      .create({ model: 'anthropic/claude-haiku-4-5', messages: ask('the pool is paused') })
      .withResponse();
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(next.data.model).toBe('openai/gpt-4o-mini');
    expect(calls('anthropic')).toHaveLength(0);
    expect(next.response.headers.get('x-faregate-attempts')).toMatch(/^anthropic:\w+,openai:ok$/);
  });

  it('a retry-after longer than the patience is not waited: one call, and the 429 at once', async () => {
    storm('openai', 5, 20_000);
    stack.fake.clearCalls();
    const started = Date.now();
    const err = (await client.chat.completions
      .create(
        { model: 'openai/gpt-4o-mini', messages: ask('long retry-after') },
        { headers: { 'x-faregate-patience-ms': '2000' } },
      )
      .catch((e: unknown) => e)) as InstanceType<typeof OpenAI.APIError>;
    expect(err).toBeInstanceOf(OpenAI.RateLimitError);
    expect(Number(err.headers?.get('retry-after'))).toBeGreaterThanOrEqual(19);
    expect(calls('openai')).toHaveLength(1);
    expect(Date.now() - started).toBeLessThan(2_000);
    // A patience that is not a number of milliseconds is the caller's error.
    const bad = await client.chat.completions
      .create(
        { model: 'openai/gpt-4o-mini', messages: ask('x') },
        { headers: { 'x-faregate-patience-ms': 'soon' } },
      )
      .catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(OpenAI.BadRequestError);
  });

  it("a pool paused past the caller's patience answers the next caller 429 within that patience, with no call", async () => {
    // The test before left the openai pool paused for 20 s by a 429; the fake answers again.
    stack.fake.reset();
    stack.fake.clearCalls();
    const started = Date.now();
    const err = (await client.chat.completions
      .create(
        { model: 'openai/gpt-4o-mini', messages: ask('paused pool') },
        { headers: { 'x-faregate-patience-ms': '1000' } },
      )
      .catch((e: unknown) => e)) as InstanceType<typeof OpenAI.APIError>;
    // What it was instead, if not a 429: the error's own words.
    expect(`${err.status} ${err.message}`).toMatch(/^429 /);
    expect(err).toBeInstanceOf(OpenAI.RateLimitError);
    expect(Date.now() - started).toBeLessThan(1_000);
    expect(Number(err.headers?.get('retry-after'))).toBeGreaterThanOrEqual(10);
    expect(calls('openai')).toHaveLength(0);
  });
});
