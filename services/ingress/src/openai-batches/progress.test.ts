import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BatchProgressEvent } from '@faregate/contracts/ws';
import { makeKeys } from '@faregate/queue/keys';
import { createRedis } from '@faregate/queue/redis';
import { testRedis } from '@faregate/testing/env';
import type { IngressDeps } from '../deps.ts';
import {
  type EndedLine,
  endedWith,
  progressKeys,
  progressPosition,
  publishLines,
  publishStatus,
  readProgress,
} from './progress.ts';

/** The progress stream's script against a real Redis: each line once, statuses forward, bounded, expiring. */
const { url, prefix } = testRedis();
let redis: Redis;
let deps: IngressDeps;
let n = 0;
const batchId = () => `batch_progresstest${++n}`;
beforeAll(() => {
  redis = createRedis(url);
  // What the stream needs of the ingress's deps (a line with its result needs no database).
  deps = {
    redis,
    keys: makeKeys(prefix),
    config: { STREAM_TTL_SECONDS: 60, BATCH_WINDOW_SECONDS: 3600, BATCH_PROGRESS_MAXLEN: 100 },
  } as unknown as IngressDeps;
});
afterAll(() => redis.disconnect());

const ok = (line: number): EndedLine =>
  endedWith(line, 'completed', {
    id: `batch_req_${line}`,
    custom_id: `c${line}`,
    response: { status_code: 200, request_id: `req_${line}`, body: {} },
    error: null,
  });
const bad = (line: number): EndedLine =>
  endedWith(line, 'failed', {
    id: `batch_req_${line}`,
    custom_id: `c${line}`,
    response: { status_code: 400, request_id: `req_${line}`, body: {} },
    error: null,
  });
const row = (id: string, status: string, total = 0) => ({
  id,
  status,
  total,
  completed: 0,
  failed: 0,
  outputFileId: null,
  errorFileId: null,
});
const read = async (id: string) =>
  (await readProgress(deps, id, 0)).map((r) => BatchProgressEvent.parse(JSON.parse(r)));

describe('batch progress stream', () => {
  it('reports each line once, however often it is reported, with running counts', async () => {
    const id = batchId();
    await publishStatus(deps, row(id, 'in_progress', 3));
    await publishLines(deps, id, [ok(1), bad(2)]);
    // A driver step that failed after reporting runs again; another driver races the same lines.
    await publishLines(deps, id, [ok(1), bad(2), ok(3)]);
    await publishLines(deps, id, [ok(3)]);
    const es = await read(id);
    expect(es.map((e) => [e.seq, e.type, 'line' in e ? e.line : e.status])).toEqual([
      [1, 'batch_status', 'in_progress'],
      [2, 'batch_line', 1],
      [3, 'batch_line', 2],
      [4, 'batch_line', 3],
    ]);
    expect(es[3]).toMatchObject({
      custom_id: 'c3',
      status: 'completed',
      status_code: 200,
      request_id: 'req_progresstest1_3',
      request_counts: { total: 3, completed: 2, failed: 1 },
    });
  });

  it('moves statuses forward only, whoever reports them, and expires the stream after the end', async () => {
    const id = batchId();
    await publishStatus(deps, row(id, 'validating'));
    await publishStatus(deps, row(id, 'in_progress', 2));
    await publishStatus(deps, row(id, 'cancelling', 2));
    // A stale report (a driver step that began before the cancel) changes nothing.
    await publishStatus(deps, row(id, 'in_progress', 2));
    await publishStatus(deps, {
      ...row(id, 'cancelled', 2),
      completed: 1,
      outputFileId: 'file_out',
    });
    await publishStatus(deps, row(id, 'cancelled', 2));
    const es = await read(id);
    expect(es.map((e) => (e.type === 'batch_status' ? e.status : e.type))).toEqual([
      'validating',
      'in_progress',
      'cancelling',
      'cancelled',
    ]);
    expect(es.at(-1)).toMatchObject({
      output_file_id: 'file_out',
      error_file_id: null,
      request_counts: { total: 2, completed: 1, failed: 0 },
    });
    expect(await progressPosition(deps, id)).toEqual({ lastSeq: 4, firstSeq: 1, final: true });
    const k = progressKeys(deps, id);
    // Kept STREAM_TTL_SECONDS after the end (it was the window plus that while running).
    for (const key of [k.events, k.meta]) {
      const ttl = await redis.pttl(key);
      expect(ttl).toBeGreaterThan(50_000);
      expect(ttl).toBeLessThanOrEqual(60_000);
    }
  });

  it('keeps at least MAXLEN events, dropping the oldest', async () => {
    const id = batchId();
    await publishStatus(deps, row(id, 'in_progress', 1000));
    for (let i = 0; i < 10; i++)
      await publishLines(
        deps,
        id,
        Array.from({ length: 100 }, (_, j) => ok(i * 100 + j + 1)),
      );
    const pos = await progressPosition(deps, id);
    expect(pos.lastSeq).toBe(1001);
    expect(pos.firstSeq).toBeGreaterThan(1);
    expect(pos.lastSeq - pos.firstSeq + 1).toBeGreaterThanOrEqual(100);
    expect(await redis.xlen(progressKeys(deps, id).events)).toBeLessThan(1001);
    const kept = await readProgress(deps, id, 0, 2000);
    expect(kept.length).toBe(pos.lastSeq - pos.firstSeq + 1);
  });
});
