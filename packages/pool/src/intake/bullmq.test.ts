import { EventEmitter } from 'node:events';
import type { Worker } from 'bullmq';
import { describe, expect, it, vi } from 'vitest';
import type { ChatJobData, JobData } from '@faregate/contracts/jobs';
import { chatJob } from '@faregate/testing/job';
import { queuedSpeculative, reportWorkerErrors } from './bullmq.ts';

const data = (over: Partial<ChatJobData> = {}) => chatJob({ id: 'req_q', retain: true, ...over });

describe('queue intake: which queued starts call before claiming', () => {
  const first = { attemptsStarted: 1, stalledCounter: 0 };

  it("a batch line's first start", () => {
    expect(queuedSpeculative(data(), first)).toBe(true);
  });

  it('not a later start of a batch line, nor one a stall brought back (another attempt may own it)', () => {
    expect(queuedSpeculative(data(), { attemptsStarted: 2, stalledCounter: 0 })).toBe(false);
    expect(queuedSpeculative(data(), { attemptsStarted: 1, stalledCounter: 1 })).toBe(false);
  });

  it('not any other queued job: an async job (deltas) or a request that overflowed the lane (not retained)', () => {
    const { retain: _, ...notRetained } = data();
    expect(queuedSpeculative(data({ deltas: true }), first)).toBe(false);
    expect(queuedSpeculative(notRetained as JobData, first)).toBe(false);
  });
});

describe("a queue worker's errors", () => {
  it('says once per job that its lock was lost, not at every renewal, and logs other errors', () => {
    const worker = new EventEmitter();
    const log = { warn: vi.fn(), error: vi.fn() };
    reportWorkerErrors(worker as unknown as Pick<Worker, 'on'>, log);
    // What BullMQ emits at each renewal while a job it lost the lock of still runs.
    for (let renewal = 0; renewal < 3; renewal++) {
      worker.emit('lockRenewalFailed', ['a', 'b']);
      for (const id of ['a', 'b']) worker.emit('error', new Error(`could not renew lock for job ${id}`));
    }
    worker.emit('lockRenewalFailed', ['b', 'c']);
    expect(log.warn.mock.calls.map((c) => c[0])).toEqual([
      { jobs: 2, first: ['a', 'b'] },
      { jobs: 1, first: ['c'] },
    ]);
    expect(log.error).not.toHaveBeenCalled();
    // A thawed worker finishing a job that moved on meanwhile: a warning, not an error.
    worker.emit('error', new Error('Missing key for job req_1. moveToFinished'));
    expect(log.warn).toHaveBeenCalledTimes(3);
    expect(log.error).not.toHaveBeenCalled();
    worker.emit('error', new Error('Connection is closed.'));
    expect(log.error).toHaveBeenCalledWith({ err: 'Connection is closed.' }, 'worker error');
  });
});
