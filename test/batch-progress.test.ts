import { once } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { BatchOutputLine } from '@faregate/contracts/openai-batches';
import { BatchProgressEvent } from '@faregate/contracts/ws';
import { until } from '@faregate/testing/env';
import { Faregate } from '../packages/sdk/src/client.ts';
import { FaregateError } from '../packages/sdk/src/errors.ts';
import type { BatchProgress, WebSocketConstructor } from '../packages/sdk/src/types.ts';
import { adminCall } from './support/calls.ts';
import { type Message, RawWs } from './support/raw-ws.ts';
import { type Stack, startStack } from './support/stack.ts';

/**
 * Progress of OpenAI batches over the WebSocket (`subscribe` with a `batch_…` id), against the real
 * services: every line once across reconnects, statuses forward only, resume after the bounded
 * stream was trimmed, tenant isolation; through the raw protocol and through the SDK.
 */
let stack: Stack;
let sy: Faregate;
let otherKey: string;
/** Every socket the SDK opened, so a test can cut one from under it. */
const sockets: WebSocket[] = [];
class RecordingWebSocket extends WebSocket {
  constructor(url: string, init: WebSocket.ClientOptions) {
    super(url, init);
    sockets.push(this);
  }
}

beforeAll(async () => {
  stack = await startStack({
    providers: ['openai'],
    // Few lines in flight and a small stream bound, so a batch of 200 lines is trimmed.
    env: {
      BATCH_TICK_MS: '50',
      BATCH_MAX_IN_FLIGHT: '4',
      BATCH_PROGRESS_MAXLEN: '60',
      // A restarted ingress takes its batches back soon.
      BATCH_LEASE_MS: '1500',
    },
  });
  sy = new Faregate({
    baseURL: stack.url,
    apiKey: stack.apiKey,
    WebSocket: RecordingWebSocket as unknown as WebSocketConstructor,
  });
  const acc = await adminCall(stack, 'POST', '/admin/v1/accounts', { name: 'other tenant' });
  const k = await adminCall(stack, 'POST', '/admin/v1/keys', { account_id: acc.id, name: 'k' });
  otherKey = String(k.key);
}, 90_000);
afterAll(async () => {
  sy?.close();
  await stack?.stop();
});

const line = (i: number, model = 'gpt-4o-mini') => ({
  custom_id: `c-${i}`,
  method: 'POST',
  url: '/v1/chat/completions',
  body: { model, messages: [{ role: 'user', content: `question ${i}` }] },
});
async function startBatch(lines: unknown[]) {
  const f = await sy.files.create(`${lines.map((l) => JSON.stringify(l)).join('\n')}\n`, {
    filename: 'progress.jsonl',
  });
  return sy.batches.create({ input_file_id: f.id, endpoint: '/v1/chat/completions' });
}
const events = (msgs: Message[], batch: string) =>
  msgs.filter((m) => m.batch === batch && typeof m.seq === 'number').map((m) => BatchProgressEvent.parse(m));
const lineEvents = (es: BatchProgressEvent[]) => es.flatMap((e) => (e.type === 'batch_line' ? [e] : []));
const FINAL = ['completed', 'failed', 'expired', 'cancelled'];
const isFinal = (m: Message) => m.type === 'batch_status' && FINAL.includes(String(m.status));

describe('batch progress over the WebSocket', () => {
  it('delivers every line once, in seq order, across a reconnect mid-batch', async () => {
    stack.fake.configure({ provider: 'openai', firstByteMs: 120, chunkMs: 0, tokens: 6 });
    const total = 24;
    // Line 7 names a model nobody serves: it fails (404) and goes to the error file.
    const b = await startBatch(
      Array.from({ length: total }, (_, i) => line(i + 1, i === 6 ? 'no-such-model' : undefined)),
    );

    const first = await RawWs.open(stack.url, stack.apiKey);
    first.send({ op: 'subscribe', batch: b.id, after: 0, id: 's1' });
    const ack1 = await first.next((m) => m.type === 'ack' && m.id === 's1', 'ack');
    expect(ack1).toMatchObject({ op: 'subscribe', batch: b.id, after: 0 });
    await until(async () => lineEvents(events(first.messages, b.id)).length >= 5 || undefined, {
      timeoutMs: 30_000,
      what: 'five line events',
    });
    await first.cut();
    const before = events(first.messages, b.id);
    const cursor = before.at(-1)?.seq ?? 0;
    const seen = lineEvents(before).length;
    // Lines go on ending while no one listens.
    await until(
      async () => {
        const r = (await sy.batches.retrieve(b.id)).request_counts;
        // (All of them, if the batch was nearly done by the cut.)
        return r.completed + r.failed >= Math.min(seen + 4, total) || undefined;
      },
      { timeoutMs: 30_000, what: 'lines to end while disconnected' },
    );

    const second = await RawWs.open(stack.url, stack.apiKey);
    second.send({ op: 'subscribe', batch: b.id, after: cursor, id: 's2' });
    const ack2 = await second.next((m) => m.type === 'ack' && m.id === 's2', 'ack');
    expect(ack2).toMatchObject({ after: cursor, first_seq: 1 });
    expect(ack2.truncated).toBeUndefined();
    await second.next(isFinal, 'the final status');
    const after = events(second.messages, b.id);
    const all = [...before, ...after];
    await second.close();

    // One stream: seq 1, 2, 3 … with no gap and nothing twice.
    expect(all.map((e) => e.seq)).toEqual(Array.from({ length: all.length }, (_, i) => i + 1));
    expect(after[0]?.seq).toBe(cursor + 1);
    const lines = lineEvents(all);
    expect(lines.map((e) => e.line).sort((x, y) => x - y)).toEqual(
      Array.from({ length: total }, (_, i) => i + 1),
    );
    expect(lines.find((e) => e.line === 7)).toMatchObject({
      custom_id: 'c-7',
      status: 'failed',
      status_code: 404,
    });
    // Counts grow one line at a time.
    lines.forEach((e, i) => {
      expect(e.request_counts.completed + e.request_counts.failed).toBe(i + 1);
    });
    // Statuses only move forward, and the last event is the final one, with the result files.
    const statuses = all.flatMap((e) => (e.type === 'batch_status' ? [e.status] : []));
    expect(statuses[0]).toBe('validating');
    expect(statuses).toContain('in_progress');
    const last = all.at(-1);
    const done = await sy.batches.retrieve(b.id);
    expect(last).toMatchObject({
      type: 'batch_status',
      status: 'completed',
      request_counts: { total, completed: total - 1, failed: 1 },
      output_file_id: done.output_file_id,
      error_file_id: done.error_file_id,
    });
    // Each completed line's event names the request that wrote its output line.
    const out = (await (await sy.files.content(String(done.output_file_id))).text())
      .split('\n')
      .filter(Boolean)
      .map((l) => BatchOutputLine.parse(JSON.parse(l)));
    expect(out).toHaveLength(total - 1);
    for (const o of out) {
      const e = lines.find((x) => x.custom_id === o.custom_id);
      expect(e).toMatchObject({ status: 'completed', status_code: 200, request_id: o.response?.request_id });
    }

    // Subscribing at the end: the ack says it ended, and nothing follows.
    const third = await RawWs.open(stack.url, stack.apiKey);
    third.send({ op: 'subscribe', batch: b.id, after: last?.seq, id: 's3' });
    const ack3 = await third.next((m) => m.type === 'ack' && m.id === 's3', 'ack');
    expect(ack3).toMatchObject({ ended: true, last_seq: last?.seq, status: 'completed' });
    third.send({ op: 'ping', id: 'p' });
    await third.next((m) => m.type === 'pong', 'pong');
    expect(events(third.messages, b.id)).toEqual([]);
    await third.close();
  });

  it('the SDK iterates a batch progress once per line through a cut connection', async () => {
    stack.fake.configure({ provider: 'openai', firstByteMs: 100, chunkMs: 0, tokens: 6 });
    const total = 20;
    const b = await startBatch(Array.from({ length: total }, (_, i) => line(i + 1)));
    const got: BatchProgress[] = [];
    let cut = false;
    for await (const e of sy.batches.progress(b.id)) {
      got.push(e);
      if (!cut && got.filter((x) => x.type === 'batch_line').length === 4) {
        cut = true;
        sockets.at(-1)?.terminate();
      }
    }
    expect(cut).toBe(true);
    expect(got.map((e) => e.seq)).toEqual(Array.from({ length: got.length }, (_, i) => i + 1));
    const lines = got.flatMap((e) => (e.type === 'batch_line' ? [e.line] : []));
    expect(lines.sort((x, y) => x - y)).toEqual(Array.from({ length: total }, (_, i) => i + 1));
    expect(got.at(-1)).toMatchObject({
      type: 'batch_status',
      status: 'completed',
      request_counts: { total, completed: total, failed: 0 },
    });
    expect(sockets.length).toBeGreaterThan(1);
  });

  it('kill -9 of the ingress that drives the batch and serves the socket: the SDK resumes from the new one, every line once', async () => {
    stack.fake.configure({ provider: 'openai', firstByteMs: 100, chunkMs: 0, tokens: 6 });
    const total = 40;
    const b = await startBatch(Array.from({ length: total }, (_, i) => line(i + 1)));
    const got: BatchProgress[] = [];
    let killed = false;
    for await (const e of sy.batches.progress(b.id)) {
      got.push(e);
      if (!killed && got.filter((x) => x.type === 'batch_line').length === 8) {
        killed = true;
        const ingress = stack.services.find((s) => s.name === 'ingress' && s.proc.exitCode === null);
        if (!ingress) throw new Error('no ingress');
        ingress.proc.kill('SIGKILL');
        await once(ingress.proc, 'exit');
        await stack.start('ingress');
      }
    }
    expect(killed).toBe(true);
    expect(got.map((e) => e.seq)).toEqual(Array.from({ length: got.length }, (_, i) => i + 1));
    const lines = got.flatMap((e) => (e.type === 'batch_line' ? [e.line] : []));
    expect(lines.sort((x, y) => x - y)).toEqual(Array.from({ length: total }, (_, i) => i + 1));
    expect(got.at(-1)).toMatchObject({
      type: 'batch_status',
      status: 'completed',
      request_counts: { total, completed: total, failed: 0 },
    });
  }, 120_000);

  it('resumes past events the bounded stream dropped with one gap, then every event kept', async () => {
    stack.fake.configure({ provider: 'openai', firstByteMs: 0, chunkMs: 0, tokens: 4 });
    const total = 200;
    const b = await startBatch(Array.from({ length: total }, (_, i) => line(i + 1)));
    await until(async () => (FINAL.includes((await sy.batches.retrieve(b.id)).status) ? true : undefined), {
      timeoutMs: 90_000,
      intervalMs: 200,
      what: 'the batch to end',
    });
    const raw = await RawWs.open(stack.url, stack.apiKey);
    raw.send({ op: 'subscribe', batch: b.id, after: 0, id: 't' });
    const ack = await raw.next((m) => m.type === 'ack' && m.id === 't', 'ack');
    await raw.close();
    expect(ack).toMatchObject({ truncated: true, status: 'completed' });
    const firstSeq = Number(ack.first_seq);
    expect(firstSeq).toBeGreaterThan(1);
    expect(Number(ack.last_seq) - firstSeq + 1).toBeGreaterThanOrEqual(60);

    const got: BatchProgress[] = [];
    for await (const e of sy.batches.progress(b.id)) got.push(e);
    expect(got[0]).toMatchObject({
      type: 'batch_gap',
      seq: firstSeq - 1,
      missed: firstSeq - 1,
      status: 'completed',
    });
    expect(got.map((e) => e.seq)).toEqual(Array.from({ length: got.length }, (_, i) => firstSeq - 1 + i));
    expect(got.at(-1)).toMatchObject({
      type: 'batch_status',
      status: 'completed',
      request_counts: { total, completed: total, failed: 0 },
    });
  }, 120_000);

  it('cancels a batch over the WebSocket and reports cancelling, then cancelled', async () => {
    stack.fake.configure({ provider: 'openai', firstByteMs: 150, chunkMs: 0, tokens: 6 });
    const b = await startBatch(Array.from({ length: 40 }, (_, i) => line(i + 1)));
    const ws = await RawWs.open(stack.url, stack.apiKey);
    ws.send({ op: 'subscribe', batch: b.id, id: 's' });
    await ws.next((m) => m.type === 'batch_line', 'a line event');
    ws.send({ op: 'cancel', batch: b.id, id: 'c' });
    expect(await ws.next((m) => m.id === 'c', 'cancel ack')).toMatchObject({ type: 'ack', batch: b.id });
    await ws.next(isFinal, 'the final status');
    await ws.close();
    const es = events(ws.messages, b.id);
    const statuses = es.flatMap((e) => (e.type === 'batch_status' ? [e.status] : []));
    expect(statuses.slice(-2)).toEqual(['cancelling', 'cancelled']);
    const lines = lineEvents(es).map((e) => e.line);
    expect(new Set(lines).size).toBe(lines.length);
    const final = await sy.batches.retrieve(b.id);
    expect(final.status).toBe('cancelled');
    expect(es.at(-1)?.request_counts).toEqual(final.request_counts);
    expect(final.request_counts.completed).toBeLessThan(40);
  });

  it('the SDK sets a file expiry and a batch output expiry', async () => {
    const f = await sy.files.create(`${JSON.stringify(line(0))}\n`, {
      filename: 'expiring.jsonl',
      expiresAfter: { anchor: 'created_at', seconds: 3600 },
    });
    expect(f.expires_at).toBe(f.created_at + 3600);
    const b = await sy.batches.create({
      input_file_id: f.id,
      endpoint: '/v1/chat/completions',
      output_expires_after: { anchor: 'created_at', seconds: 86_400 },
    });
    for await (const e of sy.batches.progress(b.id))
      if (e.type === 'batch_status' && FINAL.includes(e.status)) break;
    const done = await sy.batches.retrieve(b.id);
    expect(done.status).toBe('completed');
    const out = await sy.files.retrieve(done.output_file_id ?? '');
    expect(out.expires_at).toBe(out.created_at + 86_400);
  });

  it("another tenant's batch is a batch that does not exist", async () => {
    stack.fake.configure({ provider: 'openai', firstByteMs: 0, chunkMs: 0, tokens: 4 });
    const b = await startBatch([line(1), line(2)]);
    const ws = await RawWs.open(stack.url, otherKey);
    ws.send({ op: 'subscribe', batch: b.id, id: 's' });
    ws.send({ op: 'cancel', batch: b.id, id: 'c' });
    ws.send({ op: 'subscribe', batch: 'batch_doesnotexist00', id: 'u' });
    const notFound = { type: 'nack', batch: b.id, error: { code: 'not_found', param: 'batch' } };
    expect(await ws.next((m) => m.id === 's', 'subscribe reply')).toMatchObject({
      ...notFound,
      op: 'subscribe',
    });
    expect(await ws.next((m) => m.id === 'c', 'cancel reply')).toMatchObject({ ...notFound, op: 'cancel' });
    const unknown = await ws.next((m) => m.id === 'u', 'unknown reply');
    const s = await ws.next((m) => m.id === 's', 'subscribe reply');
    // The same answer, word for word, as for an id that does not exist.
    expect((s.error as { message: string }).message.replace(b.id, 'X')).toBe(
      (unknown.error as { message: string }).message.replace('batch_doesnotexist00', 'X'),
    );
    expect(events(ws.messages, b.id)).toEqual([]);
    await ws.close();

    const stranger = new Faregate({ baseURL: stack.url, apiKey: otherKey });
    const err = await (async () => {
      for await (const _ of stranger.batches.progress(b.id)) {
        // nothing may arrive
      }
    })().catch((e: unknown) => e);
    stranger.close();
    expect(err).toBeInstanceOf(FaregateError);
    expect(err).toMatchObject({ status: 404, code: 'not_found' });
    // The owner's batch was not cancelled by the stranger.
    const own = await until(
      async () => {
        const x = await sy.batches.retrieve(b.id);
        return FINAL.includes(x.status) ? x : undefined;
      },
      { timeoutMs: 30_000, what: 'the batch to end' },
    );
    expect(own.status).toBe('completed');
  });
});
