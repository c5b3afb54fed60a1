import { describe, expect, it } from 'vitest';
import { eventCostMicros, toMicroPrice } from './cost.ts';

const tokens = (input: number, cached: number, cacheWrite: number, output: number) => ({
  inputTokens: input,
  cachedInputTokens: cached,
  cacheWriteTokens: cacheWrite,
  outputTokens: output,
});

describe('eventCostMicros', () => {
  it('prices each token class and excludes cached/cache-write tokens from plain input', () => {
    // claude-sonnet-4-5: 3.00 in, 0.30 cached, 3.75 cache write, 15.00 out (USD per M).
    const p = toMicroPrice({
      inputPerM: '3.00',
      cachedInputPerM: '0.30',
      cacheWritePerM: '3.75',
      outputPerM: '15.00',
    });
    // 1000 input of which 600 cached and 200 written: 200×3 + 600×0.3 + 200×3.75 + 100×15 = 600+180+750+1500 µUSD
    expect(eventCostMicros(tokens(1000, 600, 200, 100), p)).toBe(3030n);
  });

  it('prices 1-hour cache writes apart: the probe found them billed as 5-minute ones', () => {
    // claude-haiku-4-5: 1.00 in, 1.25 5-minute write, 2.00 1-hour write, 5.00 out (USD per M).
    const p = toMicroPrice({
      inputPerM: '1.00',
      cachedInputPerM: '0.10',
      cacheWritePerM: '1.25',
      cacheWrite1hPerM: '2.00',
      outputPerM: '5.00',
    });
    // The probe's call: 4 plain input, 1,808 written with ttl 1h, 12 output: 4 + 3,616 + 60 µUSD.
    const call = { ...tokens(1812, 0, 1808, 12), cacheWrite1hTokens: 1808 };
    expect(eventCostMicros(call, p)).toBe(3680n);
    // Mixed TTLs: 1,000 written for 5 minutes and 808 for an hour.
    expect(eventCostMicros({ ...call, cacheWrite1hTokens: 808 }, p)).toBe(4n + 1250n + 1616n + 60n);
    // A price row from before migration 0010 (no 1-hour price): twice the input price.
    const old = toMicroPrice({
      inputPerM: '1.00',
      cachedInputPerM: '0.10',
      cacheWritePerM: '1.25',
      outputPerM: '5.00',
    });
    expect(eventCostMicros(call, old)).toBe(3680n);
  });

  it('falls back to the input price for cache classes without their own price', () => {
    const p = toMicroPrice({
      inputPerM: '2.50',
      cachedInputPerM: null,
      cacheWritePerM: null,
      outputPerM: '10',
    });
    expect(eventCostMicros(tokens(1000, 400, 100, 0), p)).toBe(2500n);
  });

  it('rounds once per event, up, not per token class: a call is never cheaper than its tokens', () => {
    // gpt-4o-mini 0.15 in / 0.60 out: 3 input + 1 output = 0.45 + 0.6 = 1.05 µUSD → 2.
    // 1 input + 1 output = 0.15 + 0.6 = 0.75 → 1 (rounding each class first would give 1 + 1 = 2).
    const p = toMicroPrice({
      inputPerM: '0.15',
      cachedInputPerM: null,
      cacheWritePerM: null,
      outputPerM: '0.60',
    });
    expect(eventCostMicros(tokens(3, 0, 0, 1), p)).toBe(2n);
    expect(eventCostMicros(tokens(1, 0, 0, 1), p)).toBe(1n);
    expect(eventCostMicros(tokens(10, 0, 0, 0), p)).toBe(2n); // 1.5 → 2
    expect(eventCostMicros(tokens(20, 0, 0, 0), p)).toBe(3n); // 3.0 → 3 (exact stays exact)
    // A two-token embedding: 0.04 µUSD, never free.
    expect(
      eventCostMicros(
        tokens(2, 0, 0, 0),
        toMicroPrice({ inputPerM: '0.02', cachedInputPerM: null, cacheWritePerM: null, outputPerM: '0' }),
      ),
    ).toBe(1n);
  });

  it('is exact for large counts and zero for free models', () => {
    const p = toMicroPrice({
      inputPerM: '1.25',
      cachedInputPerM: '0.125',
      cacheWritePerM: null,
      outputPerM: '10.00',
    });
    expect(eventCostMicros(tokens(2_000_000_000, 1_000_000_000, 0, 2_000_000_000), p)).toBe(21_375_000_000n);
    const free = toMicroPrice({
      inputPerM: '0',
      cachedInputPerM: null,
      cacheWritePerM: null,
      outputPerM: '0',
    });
    expect(eventCostMicros(tokens(5000, 0, 0, 5000), free)).toBe(0n);
  });

  it('never charges negative input when counts are inconsistent', () => {
    const p = toMicroPrice({ inputPerM: '1', cachedInputPerM: '0.5', cacheWritePerM: null, outputPerM: '1' });
    expect(eventCostMicros(tokens(10, 20, 0, 0), p)).toBe(10n);
  });
});
