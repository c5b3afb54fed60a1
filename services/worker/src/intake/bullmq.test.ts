import { describe, expect, it } from 'vitest';
import type { JobData } from '@faregate/contracts/jobs';
import { queuedSpeculative } from './bullmq.ts';

const data = (over: Partial<JobData> = {}) =>
  ({
    v: 1,
    id: 'req_q',
    account: 'acct',
    key: 'key',
    request: { model: 'm', messages: [{ role: 'user', content: 'hi' }] },
    requestedModel: 'm',
    plan: [{ provider: 'openai', model: 'gpt-4o-mini' }],
    hop: 0,
    deltas: false,
    retain: true,
    created: 0,
    deadline: 1,
    attempts: [],
    ...over,
  }) as JobData;

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
