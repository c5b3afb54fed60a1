import { describe, expect, it } from 'vitest';
import { newId } from './ids.ts';

describe('newId', () => {
  it('gives prefixed, url-safe ids of 128 random bits that never repeat across pool refills', () => {
    const ids = Array.from({ length: 10_000 }, () => newId('req'));
    expect(new Set(ids).size).toBe(ids.length);
    for (const id of ids.slice(0, 300)) expect(id).toMatch(/^req_[A-Za-z0-9_-]{22}$/);
    expect(newId('lease', 12)).toMatch(/^lease_[A-Za-z0-9_-]{16}$/);
    expect(newId('big', 5000)).toMatch(/^big_[A-Za-z0-9_-]{6667}$/);
  });
});
