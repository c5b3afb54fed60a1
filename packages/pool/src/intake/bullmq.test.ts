import { describe, expect, it } from 'vitest';
import type { ChatJobData, JobData } from '@faregate/contracts/jobs';
import { chatJob } from '@faregate/testing/job';
import { queuedSpeculative } from './bullmq.ts';

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
