import { request } from 'node:http';
import Anthropic from '@anthropic-ai/sdk';
import { until } from '@faregate/testing/env';
import OpenAI from 'openai';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { type CallRecord, type FakeProvider, startFakeProvider } from './server.ts';

let fake: FakeProvider;
const openai = (opts: { maxRetries?: number; timeout?: number } = {}) =>
  new OpenAI({ apiKey: 'sk-test', baseURL: `${fake.url}/openai/v1`, maxRetries: 0, ...opts });
const anthropic = (maxRetries = 0) =>
  new Anthropic({ apiKey: 'sk-ant', baseURL: `${fake.url}/anthropic`, maxRetries });
const user = (content: string) => [{ role: 'user' as const, content }];

beforeAll(async () => {
  fake = await startFakeProvider();
});
afterAll(() => fake.close());
beforeEach(() => fake.reset());

/** A string at `path` inside parsed JSON ('' when absent). */
function pick(v: unknown, ...path: Array<string | number>): string {
  let o = v;
  for (const k of path) o = (o as Record<string | number, unknown> | null | undefined)?.[k];
  return typeof o === 'string' ? o : '';
}

/** A raw POST whose body may be cut: everything received, and the error that ended it (if any). */
function rawStream(
  path: string,
  headers: Record<string, string>,
  body: unknown,
): Promise<{ text: string; error?: Error }> {
  return new Promise((resolve) => {
    let text = '';
    const req = request(`${fake.url}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
    });
    req.on('response', (res) => {
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        text += d;
      });
      res.on('end', () => resolve({ text }));
      res.on('error', (error) => resolve({ text, error }));
    });
    req.on('error', (error) => resolve({ text, error }));
    req.end(JSON.stringify(body));
  });
}

async function collect(stream: AsyncIterable<OpenAI.ChatCompletionChunk>) {
  const pieces: string[] = [];
  const error = await (async () => {
    for await (const c of stream) {
      const t = c.choices[0]?.delta.content;
      if (t) pieces.push(t);
    }
  })().catch((e: unknown) => e);
  return { pieces, error };
}

describe('rate limits', () => {
  it('a scripted 429 with retry-after-ms 20 is retried by the OpenAI SDK', async () => {
    fake.script('openai', [{ fault: '429', retryAfterMs: 20 }]);
    const r = await openai({ maxRetries: 2 }).chat.completions.create({
      model: 'gpt-4o',
      messages: user('hi'),
    });
    expect(r.choices[0]?.finish_reason).toBe('stop');
    const calls = fake.calls();
    expect(calls.map((c) => [c.status, c.retryCount, c.fault])).toEqual([
      [429, 0, '429'],
      [200, 1, undefined],
    ]);
  });

  it('a scripted 429 carries the real headers and body, and the Anthropic SDK retries it', async () => {
    fake.script('openai', [{ fault: '429', retryAfterMs: 20 }]);
    const res = await fetch(`${fake.url}/openai/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: 'Bearer k', 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o', messages: user('hi') }),
    });
    expect(res.status).toBe(429);
    expect(res.headers.get('retry-after-ms')).toBe('20');
    expect(res.headers.get('retry-after')).toBe('1');
    expect(res.headers.get('x-ratelimit-remaining-requests')).not.toBeNull();
    expect(await res.json()).toMatchObject({ error: { code: 'rate_limit_exceeded', type: 'requests' } });

    fake.script('anthropic', [{ fault: '429', retryAfterMs: 20 }]);
    const m = await anthropic(2).messages.create({
      model: 'claude-haiku-4-5',
      max_tokens: 10,
      messages: user('x'),
    });
    expect(m.stop_reason).toBe('max_tokens');
    const calls = fake.calls().filter((c) => c.provider === 'anthropic');
    expect(calls.map((c) => [c.status, c.retryCount])).toEqual([
      [429, 0],
      [200, 1],
    ]);
  });

  it('answers 429 past the configured rpm, per provider, with each provider headers', async () => {
    fake.configure({ provider: 'openai', rpm: 2 });
    const c = openai();
    await c.chat.completions.create({ model: 'gpt-4o', messages: user('1') });
    await c.chat.completions.create({ model: 'gpt-4o', messages: user('2') });
    const e = await c.chat.completions
      .create({ model: 'gpt-4o', messages: user('3') })
      .catch((x: unknown) => x);
    expect(e).toBeInstanceOf(OpenAI.RateLimitError);
    const err = e as InstanceType<typeof OpenAI.RateLimitError>;
    expect(err.headers?.get('x-ratelimit-remaining-requests')).toBe('0');
    expect(Number(err.headers?.get('retry-after-ms'))).toBeGreaterThan(20_000);
    // Other providers keep their own budget.
    await anthropic().messages.create({ model: 'claude-haiku-4-5', max_tokens: 5, messages: user('x') });

    fake.configure({ provider: 'anthropic', rpm: 1 });
    await anthropic().messages.create({ model: 'claude-haiku-4-5', max_tokens: 5, messages: user('x') });
    const a = await anthropic()
      .messages.create({ model: 'claude-haiku-4-5', max_tokens: 5, messages: user('x') })
      .catch((x: unknown) => x);
    expect(a).toBeInstanceOf(Anthropic.RateLimitError);
    expect((a as InstanceType<typeof Anthropic.RateLimitError>).headers?.get('retry-after')).toMatch(/^\d+$/);
    expect(
      (a as InstanceType<typeof Anthropic.RateLimitError>).headers?.get(
        'anthropic-ratelimit-requests-remaining',
      ),
    ).toBe('0');
  });
});

describe('stream faults', () => {
  it('cut_mid_stream: the client sees an error, and the log bills what was sent', async () => {
    const stream = await openai().chat.completions.create({
      model: 'gpt-4o',
      messages: user('story [[fake:{"fault":"cut_mid_stream","afterChunks":5}]]'),
      stream: true,
      stream_options: { include_usage: true },
    });
    const { pieces, error } = await collect(stream);
    expect(error).toBeInstanceOf(Error);
    expect(pieces).toHaveLength(4); // role chunk + 4 content chunks before the cut
    expect(fake.calls()[0]).toMatchObject({ status: 200, fault: 'cut_mid_stream', completionTokens: 4 });

    fake.script('openai', [{ fault: 'cut_mid_stream' }]);
    const whole = await openai()
      .chat.completions.create({ model: 'gpt-4o', messages: user('x') })
      .catch((e: unknown) => e);
    // The headers arrived, so the failure surfaces while reading the body (undici: "terminated").
    expect(whole).toBeInstanceOf(Error);
    expect(fake.calls()[1]).toMatchObject({ status: 200, completionTokens: 0 });
  });

  it('cut_after_burst: the burst arrives whole but its last blank line (or half the next event), then the cut', async () => {
    // Three providers, each in its own framing: the complete events before the cut carry exactly the
    // tokens the log bills, and the body never reaches the terminal event.
    const cases: Array<{
      path: string;
      headers: Record<string, string>;
      body: (content: string) => unknown;
      text: (d: unknown) => string;
    }> = [
      {
        path: '/openai/v1/chat/completions',
        headers: { authorization: 'Bearer k' },
        body: (content: string) => ({ model: 'gpt-4o-mini', stream: true, messages: user(content) }),
        text: (d: unknown) => pick(d, 'choices', 0, 'delta', 'content'),
      },
      {
        path: '/anthropic/v1/messages',
        headers: { 'x-api-key': 'k', 'anthropic-version': '2023-06-01' },
        body: (content: string) => ({
          model: 'claude-haiku-4-5',
          max_tokens: 100,
          stream: true,
          messages: user(content),
        }),
        text: (d: unknown) => pick(d, 'delta', 'text'),
      },
      {
        path: '/gemini/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse',
        headers: { 'x-goog-api-key': 'k' },
        body: (content: string) => ({ contents: [{ role: 'user', parts: [{ text: content }] }] }),
        text: (d: unknown) => pick(d, 'candidates', 0, 'content', 'parts', 0, 'text'),
      },
    ];
    fake.configure({ tokensPerChunk: 2 });
    for (const c of cases) {
      for (const tail of ['line', 'half'] as const) {
        fake.clearCalls();
        const directive = { fault: 'cut_after_burst', afterChunks: 1, burstTokens: 8, tokens: 20, tail };
        const raw = await rawStream(c.path, c.headers, c.body(`burst [[fake:${JSON.stringify(directive)}]]`));
        expect(raw.error, `${c.path} ${tail}`).toBeDefined();
        const events = raw.text.split(/\r?\n\r?\n/);
        const rest = events.pop() ?? '';
        const words = events
          .map((e) => /^data: (.*)$/m.exec(e)?.[1])
          .filter((d) => d !== undefined)
          .map((d) => c.text(JSON.parse(d)))
          .join('');
        if (tail === 'line') {
          // The last event's data line arrived whole, with its line ending, but not the blank line.
          expect(rest).toMatch(/\ndata: \{.*\}\r?\n$|^data: \{.*\}\r?\n$/);
          const last = c.text(JSON.parse(/data: (.*)/.exec(rest)?.[1] ?? ''));
          const sent = (words + last).trim().split(/\s+/).length;
          expect(fake.calls()[0]).toMatchObject({ fault: 'cut_after_burst', completionTokens: sent });
          expect(sent).toBeGreaterThanOrEqual(8);
        } else {
          // Half an event: its data is cut short, and the log bills only the whole events.
          expect(rest.length).toBeGreaterThan(0);
          expect(() => JSON.parse(/data: (.*)/.exec(rest)?.[1] ?? '{')).toThrow();
          expect(fake.calls()[0]?.completionTokens).toBe(words.trim().split(/\s+/).length);
        }
        expect(raw.text).not.toMatch(/\[DONE\]|message_stop|finishReason/);
      }
    }
  });

  it('hang_before_headers: the client times out and the log shows no status', async () => {
    fake.script('openai', [{ fault: 'hang_before_headers' }]);
    const e = await openai({ timeout: 100 })
      .chat.completions.create({ model: 'gpt-4o', messages: user('x') })
      .catch((x: unknown) => x);
    expect(e).toBeInstanceOf(OpenAI.APIConnectionTimeoutError);
    expect(fake.calls()[0]).toMatchObject({ status: 0, fault: 'hang_before_headers' });
  });

  it('hang_mid_stream: chunks stop arriving until the client gives up', async () => {
    const ac = new AbortController();
    const stream = await openai().chat.completions.create(
      {
        model: 'gpt-4o',
        messages: user('[[fake:{"fault":"hang_mid_stream","afterChunks":3}]]'),
        stream: true,
      },
      { signal: ac.signal },
    );
    const it = stream[Symbol.asyncIterator]();
    for (let i = 0; i < 3; i++) expect((await it.next()).done).toBe(false);
    const silence = Symbol('silence');
    // Asserting silence needs a bound; 100 ms is long for a fake that otherwise answers in microseconds.
    const next = it.next();
    const raced = await Promise.race([next, new Promise((r) => setTimeout(() => r(silence), 100))]);
    expect(raced).toBe(silence);
    ac.abort();
    await next.catch(() => undefined);
    const rec = await until(() => fake.calls()[0]);
    expect(rec).toMatchObject({ status: 200, completionTokens: 2 });
  });

  it('malformed_sse makes the SDK throw; huge_line and unknown_event are parsed through', async () => {
    const ask = (content: string) =>
      openai().chat.completions.create({ model: 'gpt-4o-mini', messages: user(content), stream: true });
    const bad = await collect(await ask('[[fake:{"fault":"malformed_sse"}]]'));
    expect(bad.error).toBeInstanceOf(SyntaxError);

    const reference = await openai().chat.completions.create({
      model: 'gpt-4o-mini',
      messages: user('same'),
    });
    const expected = reference.choices[0]?.message.content;
    fake.script('openai', [{ fault: 'huge_line', bytes: 3_000_000 }, { fault: 'unknown_event' }]);
    const huge = await collect(await ask('same'));
    expect(huge.error).toBeUndefined();
    expect(huge.pieces.join('')).toBe(expected);
    const unknown = await collect(await ask('same'));
    expect(unknown.error).toBeUndefined();
    expect(unknown.pieces.join('')).toBe(expected);

    const raw = await fetch(`${fake.url}/openai/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: 'Bearer k', 'content-type': 'application/json' },
      body: JSON.stringify({
        model: 'gpt-4o-mini',
        stream: true,
        messages: user('[[fake:{"fault":"huge_line"}]]'),
      }),
    });
    const longest = Math.max(...(await raw.text()).split('\n').map((l) => l.length));
    expect(longest).toBeGreaterThan(4_000_000);
  });

  it('inband_error: OpenAI SDK throws APIError without a status', async () => {
    const s = await openai().chat.completions.create({
      model: 'gpt-4o',
      messages: user('[[fake:{"fault":"inband_error"}]]'),
      stream: true,
    });
    const { error } = await collect(s);
    expect(error).toBeInstanceOf(OpenAI.APIError);
    expect(error).toMatchObject({ status: undefined, type: 'server_error' });
  });

  it('slow_stream and chunkMs pace the chunks', async () => {
    const started = Date.now();
    const s = await openai().chat.completions.create({
      model: 'gpt-4o',
      messages: user('[[fake:{"fault":"slow_stream","chunkMs":25,"tokens":3}]]'),
      stream: true,
    });
    const { pieces } = await collect(s);
    expect(pieces).toHaveLength(3);
    // role + 3 content + finish + [DONE] = 6 events, 5 gaps.
    expect(Date.now() - started).toBeGreaterThanOrEqual(5 * 25 - 5);
  });
});

describe('control API', () => {
  const control = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(`${fake.url}/_control/${path}`, {
      method,
      headers: { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json()) as unknown };
  };

  it('scripts a FIFO of faults with a model filter, logs calls, and resets', async () => {
    expect(
      (
        await control('POST', 'faults', {
          provider: 'openai',
          model: 'gpt-4o',
          faults: [{ fault: '500' }, { fault: 503 }],
        })
      ).status,
    ).toBe(200);
    const c = openai();
    const statusOf = (model: string) =>
      c.chat.completions.create({ model, messages: user('x') }).then(
        () => 200,
        (e: InstanceType<typeof OpenAI.APIError>) => e.status,
      );
    expect(await statusOf('gpt-4o-mini')).toBe(200);
    expect(await statusOf('gpt-4o')).toBe(500);
    expect(await statusOf('gpt-4o')).toBe(503);
    expect(await statusOf('gpt-4o')).toBe(200);

    const { body } = await control('GET', 'calls');
    const calls = body as CallRecord[];
    expect(calls.map((x) => x.seq)).toEqual([1, 2, 3, 4]);
    expect(calls.map((x) => x.fault)).toEqual([undefined, '500', '503', undefined]);
    expect(calls[0]).toMatchObject({
      provider: 'openai',
      path: '/openai/v1/chat/completions',
      model: 'gpt-4o-mini',
    });
    expect(calls[0]?.requestId).toMatch(/^req_/);

    await control('DELETE', 'calls');
    expect((await control('GET', 'calls')).body).toEqual([]);

    expect(
      (await control('POST', 'faults', { provider: 'openai', faults: [{ fault: 'nope' }] })).status,
    ).toBe(400);
    await control('POST', 'faults', { provider: 'openai', faults: [{ fault: '500' }] });
    await control('DELETE', 'faults');
    expect(await statusOf('gpt-4o')).toBe(200);
  });

  it('configures reply length, latency and models per provider', async () => {
    expect(
      (await control('POST', 'config', { provider: 'openai', tokens: 3, models: ['custom-1'] })).status,
    ).toBe(200);
    expect((await control('POST', 'config', { models: ['x'] })).status).toBe(400);
    const r = await openai().chat.completions.create({ model: 'custom-1', messages: user('x') });
    expect(r.usage?.completion_tokens).toBe(3);
    const other = await anthropic().messages.create({
      model: 'claude-haiku-4-5',
      max_tokens: 50,
      messages: user('x'),
    });
    expect(other.usage.output_tokens).toBe(12);

    await control('POST', 'config', { firstByteMs: 60 });
    const t0 = Date.now();
    await anthropic().messages.create({ model: 'claude-haiku-4-5', max_tokens: 50, messages: user('x') });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(55);

    await control('POST', 'reset');
    const back = await openai().chat.completions.create({ model: 'gpt-4o', messages: user('x') });
    expect(back.usage?.completion_tokens).toBe(12);
    expect(fake.calls()).toHaveLength(1);
  });

  it('rejects a malformed directive with the provider 400', async () => {
    const e = await openai()
      .chat.completions.create({ model: 'gpt-4o', messages: user('[[fake:{oops}]]') })
      .catch((x: unknown) => x);
    expect(e).toBeInstanceOf(OpenAI.BadRequestError);
    expect((e as Error).message).toContain('fake:');
  });
});
