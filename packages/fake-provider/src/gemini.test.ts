import { ApiError, FunctionCallingConfigMode, GoogleGenAI, Type } from '@google/genai';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { type FakeProvider, startFakeProvider } from './server.ts';

let fake: FakeProvider;
let client: GoogleGenAI;
beforeAll(async () => {
  fake = await startFakeProvider();
  client = new GoogleGenAI({ apiKey: 'AIza-test', httpOptions: { baseUrl: `${fake.url}/gemini` } });
});
afterAll(() => fake.close());
beforeEach(() => fake.reset());

const post = (path: string, body: unknown, headers: Record<string, string> = {}) =>
  fetch(`${fake.url}/gemini${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });

describe('gemini protocol', () => {
  it('generates content with usageMetadata, and streams the same text with cumulative usage', async () => {
    const req = {
      model: 'gemini-2.5-flash',
      contents: 'Describe the sea',
      config: { systemInstruction: 'Be brief.' },
    };
    const whole = await client.models.generateContent(req);
    expect(whole.candidates?.[0]?.finishReason).toBe('STOP');
    // ceil(9/4)+3 + ceil(16/4)+3
    expect(whole.usageMetadata).toMatchObject({
      promptTokenCount: 13,
      candidatesTokenCount: 12,
      totalTokenCount: 25,
    });
    expect(whole.modelVersion).toBe('gemini-2.5-flash');

    let text = '';
    const counts: number[] = [];
    let lastFinish: string | undefined;
    for await (const c of await client.models.generateContentStream(req)) {
      text += c.text ?? '';
      counts.push(c.usageMetadata?.candidatesTokenCount ?? -1);
      lastFinish = c.candidates?.[0]?.finishReason;
    }
    expect(text).toBe(whole.text);
    expect(counts).toEqual(Array.from({ length: 12 }, (_, i) => i + 1));
    expect(lastFinish).toBe('STOP');
    expect(fake.calls().at(-1)).toMatchObject({ stream: true, promptTokens: 13, completionTokens: 12 });
  });

  it('reports thoughts and cached tokens when asked, and MAX_TOKENS at maxOutputTokens', async () => {
    const r = await client.models.generateContent({
      model: 'gemini-2.5-pro',
      contents: 'think [[fake:{"reasoningTokens":20,"cachedTokens":3}]]',
      config: { maxOutputTokens: 5 },
    });
    expect(r.candidates?.[0]?.finishReason).toBe('MAX_TOKENS');
    const u = r.usageMetadata!;
    expect(u).toMatchObject({ candidatesTokenCount: 5, thoughtsTokenCount: 20, cachedContentTokenCount: 3 });
    expect(u.totalTokenCount).toBe(u.promptTokenCount! + 5 + 20);
    expect(fake.calls().at(-1)).toMatchObject({ completionTokens: 25, reasoningTokens: 20, cachedTokens: 3 });
  });

  it('answers with a functionCall part and finishReason STOP', async () => {
    const config = {
      tools: [
        {
          functionDeclarations: [
            {
              name: 'get_weather',
              parameters: {
                type: Type.OBJECT,
                properties: { city: { type: Type.STRING } },
                required: ['city'],
              },
            },
          ],
        },
      ],
    };
    const r = await client.models.generateContent({
      model: 'gemini-2.0-flash',
      contents: 'weather in Oslo?',
      config,
    });
    expect(r.functionCalls).toEqual([{ name: 'get_weather', args: { city: 'Oslo' } }]);
    expect(r.candidates?.[0]?.finishReason).toBe('STOP');
    const chunks = [];
    for await (const c of await client.models.generateContentStream({
      model: 'gemini-2.0-flash',
      contents: 'hello',
      config: { ...config, toolConfig: { functionCallingConfig: { mode: FunctionCallingConfigMode.ANY } } },
    })) {
      chunks.push(c);
    }
    expect(chunks).toHaveLength(1);
    expect(chunks[0]?.functionCalls?.[0]?.name).toBe('get_weather');
  });

  it('thinks when given a budget, and returns its thoughts only with includeThoughts (billed either way)', async () => {
    const ask = (includeThoughts?: boolean) => ({
      model: 'gemini-2.5-flash',
      contents: 'Ponder the sea',
      config: { thinkingConfig: { thinkingBudget: 1024, ...(includeThoughts ? { includeThoughts } : {}) } },
    });
    const thoughtsOf = (parts: Array<{ text?: string; thought?: boolean }> | undefined) =>
      (parts ?? [])
        .filter((p) => p.thought)
        .map((p) => p.text ?? '')
        .join('');
    const shown = await client.models.generateContent(ask(true));
    const thoughts = thoughtsOf(shown.candidates?.[0]?.content?.parts);
    expect(thoughts.length).toBeGreaterThan(0);
    // The SDK's .text leaves the thoughts out.
    expect(shown.text).not.toContain(thoughts);
    const reasoning = shown.usageMetadata?.thoughtsTokenCount ?? 0;
    expect(reasoning).toBeGreaterThan(0);
    let streamed = '';
    let text = '';
    for await (const c of await client.models.generateContentStream(ask(true))) {
      streamed += thoughtsOf(c.candidates?.[0]?.content?.parts);
      text += c.text ?? '';
    }
    expect(streamed).toBe(thoughts);
    expect(text).toBe(shown.text);
    const hidden = await client.models.generateContent(ask());
    expect(thoughtsOf(hidden.candidates?.[0]?.content?.parts)).toBe('');
    expect(hidden.usageMetadata?.thoughtsTokenCount).toBe(reasoning);
    expect(hidden.text).toBe(shown.text);
  });

  it('counts every parallel call of a streamed answer, as the whole answer does', async () => {
    const tools = [
      {
        functionDeclarations: [
          { name: 'f', parameters: { type: Type.OBJECT, properties: { a: { type: Type.STRING } } } },
        ],
      },
    ];
    const req = {
      model: 'gemini-2.5-flash',
      contents: 'two calls [[fake:{"calls":2}]]',
      config: { tools, toolConfig: { functionCallingConfig: { mode: FunctionCallingConfigMode.ANY } } },
    };
    const whole = await client.models.generateContent(req);
    expect(whole.functionCalls).toHaveLength(2);
    let last: number | undefined;
    for await (const c of await client.models.generateContentStream(req))
      last = c.usageMetadata?.candidatesTokenCount;
    expect(last).toBe(whole.usageMetadata?.candidatesTokenCount);
    expect(fake.calls().at(-1)?.completionTokens).toBe(whole.usageMetadata?.candidatesTokenCount);
  });

  it('streams a JSON array without alt=sse, and accepts ?key=', async () => {
    const body = { contents: [{ role: 'user', parts: [{ text: 'array please' }] }] };
    const res = await post('/v1beta/models/gemini-2.5-flash:streamGenerateContent?key=abc', body);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    const arr = (await res.json()) as Array<{
      candidates: Array<{ content: { parts: Array<{ text: string }> } }>;
    }>;
    expect(arr).toHaveLength(12);
    const sse = await post('/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse&key=abc', body);
    const raw = await sse.text();
    expect(raw.endsWith('\r\n\r\n')).toBe(true);
    expect(raw).not.toContain('[DONE]');
    const joined = arr.map((c) => c.candidates[0]!.content.parts[0]!.text).join('');
    const whole = (await (
      await post('/v1beta/models/gemini-2.5-flash:generateContent?key=abc', body)
    ).json()) as {
      candidates: Array<{ content: { parts: Array<{ text: string }> } }>;
    };
    expect(joined).toBe(whole.candidates[0]!.content.parts[0]!.text);
  });

  it('pages models with pageSize/pageToken', async () => {
    const names: string[] = [];
    for await (const m of await client.models.list({ config: { pageSize: 3 } })) names.push(m.name ?? '');
    expect(names).toEqual([
      'models/gemini-2.5-flash',
      'models/gemini-2.5-pro',
      'models/gemini-2.5-flash-lite',
      'models/gemini-2.0-flash',
      'models/gemini-embedding-001',
      'models/text-embedding-004',
    ]);
    expect(fake.calls().filter((c) => c.path.endsWith('/models'))).toHaveLength(2);
    const one = await client.models.get({ model: 'gemini-2.5-pro' });
    expect(one).toMatchObject({ name: 'models/gemini-2.5-pro', inputTokenLimit: 1_048_576 });
  });

  it('throws ApiError with Google RPC bodies', async () => {
    const bad = new GoogleGenAI({ apiKey: 'bad-key', httpOptions: { baseUrl: `${fake.url}/gemini` } });
    const auth = await bad.models
      .generateContent({ model: 'gemini-2.5-flash', contents: 'x' })
      .catch((e) => e);
    expect(auth).toBeInstanceOf(ApiError);
    expect(auth.status).toBe(400);
    expect(JSON.parse(auth.message).error.details[0].reason).toBe('API_KEY_INVALID');

    const nf = await client.models.generateContent({ model: 'gemini-9', contents: 'x' }).catch((e) => e);
    expect(nf).toBeInstanceOf(ApiError);
    expect(JSON.parse(nf.message).error).toMatchObject({ code: 404, status: 'NOT_FOUND' });

    fake.script('gemini', [{ fault: '429', retryAfterMs: 1500 }]);
    const limited = await client.models
      .generateContent({ model: 'gemini-2.5-flash', contents: 'x' })
      .catch((e) => e);
    expect(limited.status).toBe(429);
    const details = JSON.parse(limited.message).error.details as Array<Record<string, unknown>>;
    expect(details.find((d) => String(d['@type']).endsWith('RetryInfo'))).toMatchObject({
      retryDelay: '1.5s',
    });

    const noKey = await post('/v1beta/models/gemini-2.5-flash:generateContent', { contents: [] });
    expect(noKey.status).toBe(403);
  });

  it('raises the in-band error mid-stream', async () => {
    const stream = await client.models.generateContentStream({
      model: 'gemini-2.5-flash',
      contents: 'x [[fake:{"fault":"inband_error","afterChunks":3}]]',
    });
    let n = 0;
    const err = await (async () => {
      for await (const _ of stream) n++;
    })().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect(n).toBeLessThanOrEqual(3);
  });
});
