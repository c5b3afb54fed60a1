import type { ChatRequest } from '@faregate/contracts/chat';
import type { GatewayError } from '@faregate/contracts/errors';
import { type FakeProvider, type FakeProviderId, startFakeProvider } from '@faregate/fake-provider/server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { callProvider, closeHttp } from '../call.ts';
import { adapterForConfig, providersFromEnv } from '../registry.ts';
import type { ProviderConfig, StreamEvent } from '../types.ts';

/** The same assertions against the fake provider, over real HTTP, through callProvider. */
interface FakeCase {
  id: FakeProviderId;
  model: string;
  /** Anthropic reports thinking inside output_tokens only. */
  reportsReasoning: boolean;
  overloadedFault: '503' | '529';
  /** Ollama's 429 carries no retry hint. */
  advertisesRetry: boolean;
}

const CASES: FakeCase[] = [
  {
    id: 'openai',
    model: 'gpt-4o-mini',
    reportsReasoning: true,
    overloadedFault: '503',
    advertisesRetry: true,
  },
  {
    id: 'anthropic',
    model: 'claude-sonnet-4-5',
    reportsReasoning: false,
    overloadedFault: '529',
    advertisesRetry: true,
  },
  {
    id: 'gemini',
    model: 'gemini-2.5-flash',
    reportsReasoning: true,
    overloadedFault: '503',
    advertisesRetry: true,
  },
  { id: 'llama', model: 'llama3.2', reportsReasoning: true, overloadedFault: '503', advertisesRetry: false },
];

let fake: FakeProvider;
let configs: ProviderConfig[];

beforeAll(async () => {
  fake = await startFakeProvider({ firstByteMs: 0, chunkMs: 0 });
  configs = providersFromEnv({ FAKE_PROVIDER_URL: fake.url });
});

afterAll(async () => {
  await closeHttp();
  await fake.close();
});

const tools: ChatRequest['tools'] = [
  {
    type: 'function',
    function: { name: 'lookup', parameters: { type: 'object', properties: { q: { type: 'string' } } } },
  },
];

async function failure(p: Promise<unknown>): Promise<GatewayError> {
  try {
    await p;
  } catch (e) {
    return e as GatewayError;
  }
  throw new Error('expected the call to fail');
}

describe.each(CASES)('conformance (fake provider): $id', (c) => {
  const config = () => {
    const found = configs.find((x) => x.id === c.id);
    if (!found) throw new Error(`no fake config for ${c.id}`);
    return found;
  };
  const call = (
    directive: object | undefined,
    opts: { stream?: boolean; req?: Partial<ChatRequest>; key?: string; idleMs?: number } = {},
  ) => {
    const cfg = config();
    const text = `Hello there${directive ? ` [[fake:${JSON.stringify(directive)}]]` : ''}`;
    const events: StreamEvent[] = [];
    const p = callProvider({
      adapter: adapterForConfig(cfg),
      config: cfg,
      apiKey: opts.key ?? cfg.apiKeys[0],
      request: {
        model: c.model,
        messages: [
          { role: 'system', content: 'Be brief.' },
          { role: 'user', content: text },
        ],
        ...opts.req,
      },
      model: c.model,
      stream: opts.stream ?? true,
      onEvent: (e) => events.push(e),
      ...(opts.idleMs ? { timeouts: { idleMs: opts.idleMs } } : {}),
    });
    return { p, events };
  };
  const lastCall = () => fake.calls().at(-1);

  for (const stream of [true, false]) {
    it(`${stream ? 'stream' : 'non-stream'}: usage equals what the provider billed`, async () => {
      const { p, events } = call({ tokens: 12, cachedTokens: 4, reasoningTokens: 3 }, { stream });
      const r = await p;
      const billed = lastCall();
      expect(r.status).toBe(200);
      expect(r.completion.finishReason).toBe('stop');
      expect(r.completion.content?.length).toBeGreaterThan(0);
      expect(r.completion.usage).toMatchObject({
        inputTokens: billed?.promptTokens,
        cachedInputTokens: billed?.cachedTokens,
        outputTokens: billed?.completionTokens,
        ...(c.reportsReasoning ? { reasoningTokens: billed?.reasoningTokens } : {}),
      });
      if (stream) {
        expect(events.at(-1)).toEqual({ type: 'end' });
        const text = events.flatMap((e) => (e.type === 'text' ? [e.text] : [])).join('');
        expect(text).toBe(r.completion.content);
      }
    });
  }

  it('tool call: finish tool_calls, name and JSON arguments', async () => {
    const r = await call({ tool: 'lookup' }, { req: { tools } }).p;
    expect(r.completion.finishReason).toBe('tool_calls');
    expect(r.completion.toolCalls[0]?.function.name).toBe('lookup');
    expect(() => JSON.parse(r.completion.toolCalls[0]?.function.arguments ?? '')).not.toThrow();
  });

  it('429 → rate_limit_exceeded, retryable, with the advertised delay', async () => {
    const e = await failure(call({ fault: '429', retryAfterMs: 2000 }).p);
    expect(e).toMatchObject({ code: 'rate_limit_exceeded', retryable: true, upstreamStatus: 429 });
    expect(e.retryAfterMs).toBe(c.advertisesRetry ? 2000 : undefined);
  });

  it("429's message: the kind of limit and the retry, never the operator's organization or figures", async () => {
    const e = await failure(call({ fault: '429', retryAfterMs: 7000 }).p);
    expect(e.message).not.toMatch(
      /org-fake|organization|00000000-|Limit \d|Used \d|Requested \d|projects\//i,
    );
    expect(e.message).toMatch(/rate limit/);
    if (c.advertisesRetry) expect(e.message).toMatch(/retry in 7s/);
  });

  it('overloaded → overloaded, retryable; 500 → upstream_error, retryable', async () => {
    expect(await failure(call({ fault: c.overloadedFault }).p)).toMatchObject({
      code: 'overloaded',
      retryable: true,
    });
    expect(await failure(call({ fault: '500' }).p)).toMatchObject({
      code: 'upstream_error',
      retryable: true,
    });
  });

  it('context length → context_length_exceeded', async () => {
    expect(await failure(call({ fault: 'context_length' }).p)).toMatchObject({
      code: 'context_length_exceeded',
      retryable: false,
    });
  });

  it('stream cut midway → retryable error, never a success', async () => {
    const e = await failure(call({ fault: 'cut_mid_stream', afterChunks: 2 }).p);
    expect(e).toMatchObject({ code: 'upstream_error', retryable: true });
  });

  for (const stream of [true, false]) {
    it(`${stream ? 'stream' : 'non-stream'}: a 200 cut midway names HTTP 200 and the cut, never "unreachable"`, async () => {
      const e = await failure(call({ fault: 'cut_mid_stream', afterChunks: 2 }, { stream }).p);
      expect(e).toMatchObject({ code: 'upstream_error', retryable: true, upstreamStatus: 200 });
      expect(e.message).toMatch(/cut off/);
    });
  }

  for (const tail of ['line', 'half'] as const) {
    it(`a cut right after a burst (${tail}): every complete event counts, then the retryable error`, async () => {
      // The burst arrives with the connection's end: the last event's data line whole but not the
      // blank line that ends it (`line`), or half of the event after it (`half`, dropped).
      const { p, events } = call({
        fault: 'cut_after_burst',
        afterChunks: 1,
        burstTokens: 8,
        tokens: 20,
        tail,
      });
      expect(await failure(p)).toMatchObject({ code: 'upstream_error', retryable: true });
      const text = events.flatMap((e) => (e.type === 'text' ? [e.text] : [])).join('');
      const words = text.trim().split(/\s+/).length;
      expect(words).toBeGreaterThanOrEqual(8);
      expect(words).toBe(lastCall()?.completionTokens);
      expect(events.some((e) => e.type === 'end')).toBe(false);
    });
  }

  it('malformed SSE → retryable upstream_error', async () => {
    expect(await failure(call({ fault: 'malformed_sse' }).p)).toMatchObject({
      code: 'upstream_error',
      retryable: true,
    });
  });

  it('in-band error after the 200 → the error, not a success', async () => {
    const { p, events } = call({ fault: 'inband_error', afterChunks: 1 });
    const e = await failure(p);
    expect(e.retryable).toBe(true);
    expect(events.at(-1)?.type).toBe('error');
    expect(events.some((x) => x.type === 'end')).toBe(false);
  });

  it('a huge line → bounded upstream_error', async () => {
    expect(await failure(call({ fault: 'huge_line', bytes: 2 * 1024 * 1024 }).p)).toMatchObject({
      code: 'upstream_error',
    });
  });

  it('unknown events are ignored', async () => {
    const r = await call({ fault: 'unknown_event' }).p;
    expect(r.completion.finishReason).toBe('stop');
  });

  it('a stream that goes silent → upstream_timeout', async () => {
    const e = await failure(call({ fault: 'hang_mid_stream', afterChunks: 1 }, { idleMs: 200 }).p);
    expect(e).toMatchObject({ code: 'upstream_timeout', retryable: true });
  });

  it('model listing parses', async () => {
    const cfg = config();
    const adapter = adapterForConfig(cfg);
    const req = adapter.listModelsRequest(cfg, cfg.apiKeys[0]);
    const res = await fetch(req.url, { headers: req.headers });
    expect(res.status).toBe(200);
    const { models } = adapter.parseModels(await res.json());
    expect(models.length).toBeGreaterThan(0);
    expect(models.every((m) => !m.id.startsWith('models/'))).toBe(true);
  });

  if (c.id !== 'llama') {
    it('a rejected key → upstream_auth_error, not retryable', async () => {
      const e = await failure(call(undefined, { key: 'bad-key' }).p);
      expect(e).toMatchObject({ code: 'upstream_auth_error', retryable: false });
    });
  }
});
