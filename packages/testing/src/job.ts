import type { ChatJobData, JobData } from '@faregate/contracts/jobs';

/**
 * A chat job as the ingress queues it (one candidate, hop 0, no deltas, a minute to its deadline),
 * with `over` on top: the fixture the worker's and the queue's tests build their jobs from.
 */
export const chatJob = (over: Partial<ChatJobData> & { id: string }): JobData => ({
  v: 1,
  account: 'acct',
  key: 'key',
  request: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] },
  requestedModel: 'gpt-4o-mini',
  plan: [{ provider: 'openai', model: 'gpt-4o-mini' }],
  hop: 0,
  deltas: false,
  created: Date.now(),
  deadline: Date.now() + 60_000,
  attempts: [],
  ...over,
});
