import { once } from 'node:events';
import { createServer, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import OpenAI, { toFile } from 'openai';
import type {
  ChatCompletionCreateParams,
  ChatCompletionMessageParam,
} from 'openai/resources/chat/completions';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeProvider, type FakeProvider } from '@faregate/fake-provider/server';
import { until } from '@faregate/testing/env';
import { jobApi } from './support/jobs.ts';
import { type Stack, startStack } from './support/stack.ts';

/**
 * OpenAI's legacy function calling (`functions`, `function_call`, `role: "function"` turns) through
 * the official SDK, on an OpenAI and an Anthropic target: served as OpenAI answers it, and reaching
 * the provider as ordinary tools (what it received is read from a recording proxy in front of the
 * fake provider).
 */
let stack: Stack;
let client: OpenAI;
let fake: FakeProvider;
let proxy: Recorder;

interface Recorder {
  url: string;
  /** Generation requests the providers received, oldest first (their JSON bodies). */
  bodies: Array<{ path: string; body: Record<string, unknown> }>;
  close(): Promise<void>;
}

/** An HTTP proxy to `target` that keeps every JSON body POSTed through it. */
async function recordingProxy(target: string): Promise<Recorder> {
  const bodies: Recorder['bodies'] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks);
      if (req.method === 'POST' && raw.length > 0)
        bodies.push({
          path: req.url ?? '',
          body: JSON.parse(raw.toString('utf8')) as Record<string, unknown>,
        });
      const up = httpRequest(
        new URL(req.url ?? '/', target),
        { method: req.method, headers: { ...req.headers, host: new URL(target).host } },
        (r) => {
          res.writeHead(r.statusCode ?? 502, r.headers);
          r.pipe(res);
        },
      );
      up.on('error', () => res.destroy());
      up.end(raw);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    bodies,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

beforeAll(async () => {
  fake = await startFakeProvider({ port: 0, host: '127.0.0.1' });
  proxy = await recordingProxy(fake.url);
  stack = await startStack({ providers: ['openai', 'anthropic'], env: { FAKE_PROVIDER_URL: proxy.url } });
  client = new OpenAI({ apiKey: stack.apiKey, baseURL: `${stack.url}/v1`, maxRetries: 0 });
}, 120_000);
afterAll(async () => {
  await stack?.stop();
  await proxy?.close();
  await fake?.close();
});

const functions: ChatCompletionCreateParams.Function[] = [
  {
    name: 'get_weather',
    description: 'The weather in a city',
    parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
  },
];
const ask = (content: string): ChatCompletionMessageParam[] => [{ role: 'user', content }];
const CALL = 'Weather in Oslo? [[fake:{"tool":true,"calls":2}]]';

/** The body the provider received for the last generation request (after `from` of them). */
const lastUpstream = (from = 0) => {
  const got = proxy.bodies.slice(from).filter((b) => !b.path.endsWith('/models'));
  const last = got.at(-1);
  if (!last) throw new Error('no generation request reached the provider');
  return last.body;
};

describe.each([
  ['openai/gpt-4o-mini', 'openai'],
  ['anthropic/claude-haiku-4-5', 'anthropic'],
] as const)('%s', (model, provider) => {
  it('answers a legacy call with message.function_call and finish_reason function_call (one call, though the model made two)', async () => {
    const from = proxy.bodies.length;
    const r = await client.chat.completions.create({ model, messages: ask(CALL), functions });
    const choice = r.choices[0];
    expect(choice?.finish_reason).toBe('function_call');
    expect(choice?.message.tool_calls).toBeUndefined();
    expect(choice?.message.function_call?.name).toBe('get_weather');
    expect(JSON.parse(choice?.message.function_call?.arguments ?? '')).toEqual({ city: 'Oslo' });
    // The provider was asked with ordinary tools, for one call at most.
    const up = lastUpstream(from);
    expect(up).not.toHaveProperty('functions');
    expect(up).not.toHaveProperty('function_call');
    if (provider === 'openai') {
      expect(up.tools).toEqual(functions.map((f) => ({ type: 'function', function: f })));
      expect(up.parallel_tool_calls).toBe(false);
    } else {
      expect(up.tools).toMatchObject([{ name: 'get_weather', input_schema: functions[0]?.parameters }]);
      expect(up.tool_choice).toEqual({ type: 'auto', disable_parallel_tool_use: true });
    }
  });

  it('streams the call as delta.function_call: the name with "" arguments, then argument pieces', async () => {
    const stream = await client.chat.completions.create({
      model,
      messages: ask(CALL),
      functions,
      stream: true,
    });
    const pieces: Array<{ name?: string; arguments?: string }> = [];
    let finish: string | null | undefined;
    for await (const chunk of stream) {
      const c = chunk.choices[0];
      if (!c) continue;
      expect(c.delta.tool_calls).toBeUndefined();
      if (c.delta.function_call) pieces.push(c.delta.function_call);
      if (c.finish_reason) finish = c.finish_reason;
    }
    expect(finish).toBe('function_call');
    expect(pieces[0]).toEqual({ name: 'get_weather', arguments: '' });
    expect(pieces.slice(1).every((p) => p.name === undefined && typeof p.arguments === 'string')).toBe(true);
    expect(JSON.parse(pieces.map((p) => p.arguments ?? '').join(''))).toEqual({ city: 'Oslo' });
    // The SDK's stream helper assembles the same message.
    const helper = client.chat.completions.stream({ model, messages: ask(CALL), functions, stream: true });
    const final = await helper.finalChatCompletion();
    expect(final.choices[0]?.finish_reason).toBe('function_call');
    expect(final.choices[0]?.message.function_call?.name).toBe('get_weather');
    expect(JSON.parse(final.choices[0]?.message.function_call?.arguments ?? '')).toEqual({ city: 'Oslo' });
  });

  it('takes the call and its function message back: the provider gets a tool call and the tool message answering it', async () => {
    const first = await client.chat.completions.create({ model, messages: ask(CALL), functions });
    const call = first.choices[0]?.message.function_call;
    if (!call) throw new Error('no function call');
    const from = proxy.bodies.length;
    const next = await client.chat.completions.create({
      model,
      functions,
      messages: [
        // (Without the directive that makes the fake call the tool whatever the conversation.)
        ...ask('Weather in Oslo?'),
        // The answer's message as the SDK returned it (refusal, annotations and all).
        first.choices[0]?.message as ChatCompletionMessageParam,
        { role: 'function', name: 'get_weather', content: '{"temp":4,"sky":"rain"}' },
      ],
    });
    expect(next.choices[0]?.finish_reason).toBe('stop');
    expect(next.choices[0]?.message.content).toBeTruthy();
    const up = lastUpstream(from);
    const messages = up.messages as Array<Record<string, unknown>>;
    if (provider === 'openai') {
      expect(messages.slice(1)).toEqual([
        {
          role: 'assistant',
          content: null,
          refusal: null,
          tool_calls: [{ id: 'call_function_1', type: 'function', function: call }],
        },
        { role: 'tool', tool_call_id: 'call_function_1', content: '{"temp":4,"sky":"rain"}' },
      ]);
    } else {
      expect(messages.slice(1)).toEqual([
        {
          role: 'assistant',
          content: [
            {
              type: 'tool_use',
              id: 'call_function_1',
              name: 'get_weather',
              input: JSON.parse(call.arguments),
            },
          ],
        },
        {
          role: 'user',
          content: [
            { type: 'tool_result', tool_use_id: 'call_function_1', content: '{"temp":4,"sky":"rain"}' },
          ],
        },
      ]);
    }
  });
});

describe('every way an answer leaves', () => {
  it('a retry with the same Idempotency-Key is answered from the job in the legacy shape: while it runs, and streamed after', async () => {
    const key = (n: string) => ({ headers: { 'Idempotency-Key': `legacy-retry-${n}-${process.pid}` } });
    // Slow enough to be retried while it runs: the retry attaches to the running job.
    const slow = 'Weather in Oslo? [[fake:{"tool":true,"fault":"slow_stream","chunkMs":40}]]';
    const from = proxy.bodies.length;
    const first = client.chat.completions
      .create({ model: 'openai/gpt-4o-mini', messages: ask(slow), functions }, key('running'))
      .withResponse();
    await until(() => proxy.bodies.length > from, { what: 'the first call to reach the provider' });
    const retry = await client.chat.completions
      .create({ model: 'openai/gpt-4o-mini', messages: ask(slow), functions }, key('running'))
      .withResponse();
    const answered = await first;
    expect(retry.response.headers.get('x-request-id')).toBe(answered.response.headers.get('x-request-id'));
    for (const r of [answered.data, retry.data]) {
      expect(r.choices[0]?.finish_reason).toBe('function_call');
      expect(r.choices[0]?.message.function_call?.name).toBe('get_weather');
    }
    // Streamed, retried after it ended: the same legacy chunks again.
    const streamed = async () => {
      const stream = await client.chat.completions.create(
        { model: 'openai/gpt-4o-mini', messages: ask(CALL), functions, stream: true },
        key('stream'),
      );
      let args = '';
      let finish: string | null | undefined;
      for await (const chunk of stream) {
        const c = chunk.choices[0];
        args += c?.delta.function_call?.arguments ?? '';
        finish = c?.finish_reason ?? finish;
      }
      return { args, finish };
    };
    const once = await streamed();
    expect(once.finish).toBe('function_call');
    expect(await streamed()).toEqual(once);
    // One provider call each, for the three requests: the retries made none.
    expect(proxy.bodies.slice(from).filter((b) => !b.path.endsWith('/models'))).toHaveLength(2);
  });

  it('an async job’s result is in the legacy shape', async () => {
    const api = jobApi(stack.url);
    const r = await api.call(stack.apiKey, 'POST', '/v1/jobs', {
      model: 'openai/gpt-4o-mini',
      messages: ask(CALL),
      functions,
    });
    expect(r.status).toBe(202);
    const job = await api.finished(stack.apiKey, r.body.id as string);
    expect(job.status).toBe('completed');
    const choice = (job.result as unknown as OpenAI.ChatCompletion).choices[0];
    expect(choice?.finish_reason).toBe('function_call');
    expect(choice?.message.tool_calls).toBeUndefined();
    expect(choice?.message.function_call?.name).toBe('get_weather');
  });

  it('a chat batch line’s answer is in the legacy shape', async () => {
    const line = {
      custom_id: 'legacy-1',
      method: 'POST',
      url: '/v1/chat/completions',
      body: { model: 'openai/gpt-4o-mini', messages: ask(CALL), functions },
    };
    const file = await client.files.create({
      file: await toFile(Buffer.from(`${JSON.stringify(line)}\n`), 'batch.jsonl'),
      purpose: 'batch',
    });
    const batch = await client.batches.create({
      input_file_id: file.id,
      endpoint: '/v1/chat/completions',
      completion_window: '24h',
    });
    const ended = await until(
      async () => {
        const b = await client.batches.retrieve(batch.id);
        return ['completed', 'failed', 'expired', 'cancelled'].includes(b.status) ? b : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 100, what: `batch ${batch.id} to end` },
    );
    expect(ended.status).toBe('completed');
    const text = await (await client.files.content(ended.output_file_id ?? '')).text();
    const out = JSON.parse(text.trim()) as { response: { status_code: number; body: OpenAI.ChatCompletion } };
    expect(out.response.status_code).toBe(200);
    const choice = out.response.body.choices[0];
    expect(choice?.finish_reason).toBe('function_call');
    expect(choice?.message.tool_calls).toBeUndefined();
    expect(choice?.message.function_call?.name).toBe('get_weather');
  });
});

describe('refused as OpenAI refuses it, before anything is queued', () => {
  async function refusal(body: Record<string, unknown>) {
    const from = proxy.bodies.length;
    const e = await client.chat.completions
      .create({ model: 'openai/gpt-4o-mini', messages: ask('hi'), ...body } as never)
      .then(
        () => undefined,
        (err: unknown) => err,
      );
    expect(e).toBeInstanceOf(OpenAI.BadRequestError);
    expect(proxy.bodies.length).toBe(from);
    const err = e as InstanceType<typeof OpenAI.BadRequestError>;
    expect(err.type).toBe('invalid_request_error');
    return err;
  }

  it('functions together with tools: a 400 naming functions', async () => {
    const e = await refusal({ functions, tools: [{ type: 'function', function: functions[0] }] });
    expect(e.param).toBe('functions');
    expect(e.message).toContain("'functions' and 'tools' cannot both be provided");
  });

  it('a function message answering no function call: a 400 naming it', async () => {
    const e = await refusal({
      functions,
      messages: [...ask('hi'), { role: 'function', name: 'get_weather', content: 'rain' }],
    });
    expect(e.param).toBe('messages.1');
  });

  it('function_call without functions, or naming none of them', async () => {
    expect((await refusal({ function_call: 'auto' })).param).toBe('function_call');
    expect((await refusal({ functions, function_call: { name: 'get_time' } })).param).toBe('function_call');
  });
});
