import { describe, expect, it } from 'vitest';
import { planServices } from './plan.ts';

const FAKE = 'http://127.0.0.1:8090';
const none = new Map<string, number>();
const ids = (p: ReturnType<typeof planServices>) => p.pools.map((x) => `${x.id}×${x.processes}`);

describe('planServices', () => {
  it('with no keys, starts the fake and serves every built-in pool and llama from it', () => {
    const p = planServices({}, none, FAKE);
    expect(p.startFake).toBe(true);
    expect(ids(p)).toEqual(['openai×1', 'anthropic×1', 'gemini×1', 'llama×1']);
    expect(p.fakePools).toEqual(['openai', 'anthropic', 'gemini', 'llama']);
  });

  it('with every key, runs no fake and no llama pool', () => {
    const p = planServices(
      { OPENAI_API_KEY: 'k1', ANTHROPIC_API_KEY: 'k2', GEMINI_API_KEY: 'k3' },
      none,
      FAKE,
    );
    expect(p.startFake).toBe(false);
    expect(p.fakePools).toEqual([]);
    expect(ids(p)).toEqual(['openai×1', 'anthropic×1', 'gemini×1']);
  });

  it('serves only the keyless pools from the fake; llama from LLAMA_BASE_URL when set', () => {
    const p = planServices({ OPENAI_API_KEY: 'k1', LLAMA_BASE_URL: 'http://gpu:11434/v1' }, none, FAKE);
    expect(p.startFake).toBe(true);
    expect(p.fakePools).toEqual(['anthropic', 'gemini']);
    expect(ids(p)).toEqual(['openai×1', 'anthropic×1', 'gemini×1', 'llama×1']);
  });

  it('uses an external fake, or none when FAKE_PROVIDER_URL is empty', () => {
    const external = planServices({ FAKE_PROVIDER_URL: 'http://elsewhere:8090' }, none, FAKE);
    expect(external.startFake).toBe(false);
    expect(external.fakePools).toEqual(['openai', 'anthropic', 'gemini', 'llama']);
    const off = planServices({ FAKE_PROVIDER_URL: '', GEMINI_API_KEY: 'k' }, none, FAKE);
    expect(off.startFake).toBe(false);
    expect(ids(off)).toEqual(['gemini×1']);
  });

  it('adds a pool for each preset key, and applies --workers counts (0 leaves a pool out)', () => {
    const p = planServices(
      { GROQ_API_KEY: 'g' },
      new Map([
        ['openai', 3],
        ['llama', 0],
        ['groq', 2],
      ]),
      FAKE,
    );
    expect(ids(p)).toEqual(['openai×3', 'anthropic×1', 'gemini×1', 'groq×2']);
    expect(p.fakePools).toEqual(['openai', 'anthropic', 'gemini']);
  });

  it('does not start the fake when every pool it would serve is switched off', () => {
    const p = planServices(
      { OPENAI_API_KEY: 'k' },
      new Map([
        ['anthropic', 0],
        ['gemini', 0],
        ['llama', 0],
      ]),
      FAKE,
    );
    expect(p.startFake).toBe(false);
    expect(ids(p)).toEqual(['openai×1']);
  });

  it('refuses --workers for a pool that is not configured', () => {
    expect(() => planServices({ OPENAI_API_KEY: 'k' }, new Map([['groq', 1]]), FAKE)).toThrow(/groq/);
  });
});
