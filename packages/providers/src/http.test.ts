import { describe, expect, it } from 'vitest';
import { toHeaders } from './http.ts';
import { readOpenAIRateLimits } from './openai-compatible/errors.ts';

describe('toHeaders (the adapters’ view of undici’s header object)', () => {
  it('reads as fetch’s Headers.get does: any case, null when absent, repeated values joined', () => {
    const h = toHeaders({ 'x-request-id': 'req_1', 'set-x': ['a', 'b'], 'retry-after': '2' });
    expect(h.get('X-Request-Id')).toBe('req_1');
    expect(h.get('set-x')).toBe('a, b');
    expect(h.get('missing')).toBeNull();
    const fetchHeaders = new Headers([
      ['set-x', 'a'],
      ['set-x', 'b'],
    ]);
    expect(h.get('set-x')).toBe(fetchHeaders.get('set-x'));
  });

  it('is what the rate-limit readers take', () => {
    const info = readOpenAIRateLimits(
      toHeaders({
        'x-ratelimit-limit-requests': '500',
        'x-ratelimit-remaining-requests': '499',
        'x-ratelimit-reset-requests': '120ms',
      }),
    );
    expect(info).toMatchObject({ limitRequests: 500, remainingRequests: 499 });
  });
});
