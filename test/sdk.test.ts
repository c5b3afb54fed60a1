import { randomInt } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { Faregate } from '../packages/sdk/src/client.ts';
import { FaregateError } from '../packages/sdk/src/errors.ts';
import type { Frame, WebSocketConstructor } from '../packages/sdk/src/types.ts';
import { assemble, seededRandom } from './support/jobs.ts';
import { type Stack, startStack } from './support/stack.ts';

/** The SDK against the real services: HTTP calls, errors, and `subscribe` through forced disconnects. */
const seed = Number(process.env.STREAM_SEED ?? randomInt(2 ** 31));
console.info(`sdk.test.ts seed=${seed} (set STREAM_SEED=${seed} to replay)`);
const between = seededRandom(seed);

let stack: Stack;
/** Every socket the SDK opened, so a test can cut one from under it. */
const sockets: WebSocket[] = [];
class RecordingWebSocket extends WebSocket {
  constructor(url: string, init: WebSocket.ClientOptions) {
    super(url, init);
    sockets.push(this);
  }
}
let sy: Faregate;

beforeAll(async () => {
  stack = await startStack({ providers: ['openai'], env: { STREAM_TTL_SECONDS: '900' } });
  stack.fake.configure({ provider: 'openai', chunkMs: 4, tokens: 120 });
  sy = new Faregate({
    baseURL: `${stack.url}/v1`,
    apiKey: stack.apiKey,
    WebSocket: RecordingWebSocket as unknown as WebSocketConstructor,
  });
}, 90_000);

afterAll(async () => {
  sy?.close();
  await stack?.stop();
});

const messages = (content: string) => [{ role: 'user' as const, content }];

describe('HTTP', () => {
  it('chats without and with streaming, with the same answer', async () => {
    const plain = await sy.chat({ model: 'gpt-4o-mini', messages: messages('same question') });
    expect(plain.object).toBe('chat.completion');
    const stream = await sy.chat({ model: 'gpt-4o-mini', messages: messages('same question'), stream: true });
    expect(stream.requestId).toMatch(/^req_/);
    let text = '';
    for await (const c of stream) text += c.choices[0]?.delta.content ?? '';
    expect(text).toBe(plain.choices[0]?.message.content);
    expect(text.length).toBeGreaterThan(50);
  });

  it('raises OpenAI-shaped errors with status, code, type and param', async () => {
    const err = await sy.chat({ model: 'no-such-model', messages: messages('x') }).catch((e) => e);
    expect(err).toBeInstanceOf(FaregateError);
    expect(err).toMatchObject({
      status: 404,
      code: 'model_not_found',
      param: 'model',
      type: 'invalid_request_error',
    });
    const bad = new Faregate({ baseURL: stack.url, apiKey: 'fg_wrong_key_000000' });
    await expect(bad.job('req_x')).rejects.toMatchObject({ status: 401, code: 'invalid_api_key' });
    await expect(sy.job('req_doesnotexist')).rejects.toMatchObject({ status: 404, code: 'not_found' });
  });

  it('submits a job and reads its status and result', async () => {
    const job = await sy.submit({ model: 'gpt-4o-mini', messages: messages('an async job') });
    expect(job).toMatchObject({ object: 'job', status: 'queued' });
    const result = await sy.result(job.id);
    const stored = await sy.job(job.id);
    expect(stored.status).toBe('completed');
    expect(result.text).toBe(stored.result?.choices[0]?.message.content);
    expect(result.completion).toEqual(stored.result);
    expect(result.lastSeq).toBe(stored.last_seq);
  });

  it('cancels a running job: the stream ends with a cancelled error', async () => {
    stack.fake.configure({ provider: 'openai', chunkMs: 20, tokens: 500 });
    try {
      const { id } = await sy.submit({ model: 'gpt-4o-mini', messages: messages('never mind') });
      const frames: Frame[] = [];
      for await (const f of sy.subscribe(id)) {
        frames.push(f);
        if (f.type === 'delta') await sy.cancel(id);
      }
      expect(frames.at(-1)).toMatchObject({ type: 'error', error: { code: 'cancelled' } });
      await expect(sy.result(id)).rejects.toMatchObject({ code: 'cancelled', status: 499 });
    } finally {
      stack.fake.configure({ provider: 'openai', chunkMs: 4, tokens: 120 });
    }
  });
});

describe('subscribe', () => {
  it('survives the socket being cut twice mid-stream and yields each frame once', async () => {
    const { id } = await sy.submit({ model: 'gpt-4o-mini', messages: messages('cut me twice') });
    const k1 = between(2, 30);
    const k2 = between(k1 + 1, k1 + 40);
    const opened = sockets.length;
    const frames: Frame[] = [];
    for await (const f of sy.subscribe(id)) {
      frames.push(f);
      // Like a network failure: no close handshake, and whatever was in flight is lost.
      if (f.seq === k1 || f.seq === k2) sockets.at(-1)?.terminate();
    }
    const n = frames.length;
    expect(
      frames.map((f) => f.seq),
      `seed ${seed}: k1=${k1} k2=${k2}`,
    ).toEqual(Array.from({ length: n }, (_, i) => i + 1));
    expect(n).toBeGreaterThan(k2);
    expect(sockets.length - opened).toBeGreaterThanOrEqual(2);
    const stored = await sy.job(id);
    expect(assemble(frames as never)).toBe(stored.result?.choices[0]?.message.content);
    expect(frames.at(-1)?.type).toBe('done');
  });

  it('resumes after a given seq, also once the job is finished', async () => {
    const { id } = await sy.submit({ model: 'gpt-4o-mini', messages: messages('finish first') });
    const all: Frame[] = [];
    for await (const f of sy.subscribe(id)) all.push(f);
    const after = between(1, all.length - 1);
    const rest: Frame[] = [];
    for await (const f of sy.subscribe(id, { after })) rest.push(f);
    expect(rest).toEqual(all.slice(after));
    // Resuming at the very end of a finished job ends at once: the ack says nothing more will come.
    const none: Frame[] = [];
    for await (const f of sy.subscribe(id, { after: all.length })) none.push(f);
    expect(none).toEqual([]);
  });

  it('fails for a job that does not exist, and for a bad key without retrying for long', async () => {
    await expect(sy.subscribe('req_doesnotexist').next()).rejects.toMatchObject({
      status: 404,
      code: 'not_found',
    });
    const bad = new Faregate({ baseURL: stack.url, apiKey: 'fg_wrong_key_000000' });
    const started = Date.now();
    await expect(bad.subscribe('req_x').next()).rejects.toMatchObject({
      status: 401,
      code: 'invalid_api_key',
    });
    expect(Date.now() - started).toBeLessThan(5_000);
    bad.close();
  });
});
