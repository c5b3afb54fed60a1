import { describe, expect, it } from 'vitest';
import { adapterFor, adapterForConfig, providersFromEnv, redact } from './registry.ts';

describe('providersFromEnv', () => {
  it('configures providers whose keys are set, with rotation lists and public defaults', () => {
    const configs = providersFromEnv({
      OPENAI_API_KEY: 'sk-a, sk-b',
      ANTHROPIC_API_KEY: 'ant-1',
      GROQ_API_KEY: 'gsk-1',
    });
    expect(configs).toEqual([
      { id: 'openai', kind: 'openai', baseUrl: 'https://api.openai.com/v1', apiKeys: ['sk-a', 'sk-b'] },
      { id: 'anthropic', kind: 'anthropic', baseUrl: 'https://api.anthropic.com', apiKeys: ['ant-1'] },
      {
        id: 'groq',
        kind: 'openai-compatible',
        baseUrl: 'https://api.groq.com/openai/v1',
        apiKeys: ['gsk-1'],
        preset: 'groq',
      },
    ]);
  });

  it('llama needs LLAMA_BASE_URL (keyless is fine); nothing set → not configured', () => {
    expect(providersFromEnv({})).toEqual([]);
    expect(providersFromEnv({ LLAMA_BASE_URL: 'http://gpu:8000/v1', LLAMA_PRESET: 'vllm' })).toEqual([
      { id: 'llama', kind: 'openai-compatible', baseUrl: 'http://gpu:8000/v1', apiKeys: [], preset: 'vllm' },
    ]);
  });

  it('FAKE_PROVIDER_URL fills in every provider without a key, marked fake', () => {
    const configs = providersFromEnv({ FAKE_PROVIDER_URL: 'http://fake:9000/', OPENAI_API_KEY: 'sk-real' });
    expect(configs.map((c) => [c.id, c.baseUrl, c.fake ?? false])).toEqual([
      ['openai', 'https://api.openai.com/v1', false],
      ['anthropic', 'http://fake:9000/anthropic', true],
      ['gemini', 'http://fake:9000/gemini', true],
      ['llama', 'http://fake:9000/llama/v1', true],
    ]);
    expect(configs[1]?.apiKeys).toEqual(['fake-key']);
  });

  it("UPSTREAM_*_MS set every provider call's timeouts (the others keep their defaults); a bad one throws", () => {
    const env = { OPENAI_API_KEY: 'k', FAKE_PROVIDER_URL: 'http://127.0.0.1:1', UPSTREAM_TOTAL_MS: '60000' };
    const configs = providersFromEnv(env);
    expect(configs.length).toBeGreaterThan(1);
    for (const c of configs) expect(c.timeouts).toEqual({ totalMs: 60_000 });
    expect(providersFromEnv({ OPENAI_API_KEY: 'k' })[0]?.timeouts).toBeUndefined();
    expect(
      providersFromEnv({
        OPENAI_API_KEY: 'k',
        UPSTREAM_CONNECT_MS: '1000',
        UPSTREAM_FIRST_BYTE_MS: '2000',
        UPSTREAM_IDLE_MS: '3000',
      })[0]?.timeouts,
    ).toEqual({ connectMs: 1000, firstByteMs: 2000, idleMs: 3000 });
    for (const bad of ['0', '-5', '1.5', 'soon'])
      expect(() => providersFromEnv({ OPENAI_API_KEY: 'k', UPSTREAM_TOTAL_MS: bad })).toThrow(
        /UPSTREAM_TOTAL_MS/,
      );
  });

  it('adapters: by kind, and by preset for openai-compatible', () => {
    expect(adapterFor('gemini').kind).toBe('gemini');
    const [groq] = providersFromEnv({ GROQ_API_KEY: 'g' });
    expect(adapterForConfig(groq!)).toBe(adapterFor('openai-compatible', 'groq'));
    expect(adapterFor('openai-compatible', 'groq')).not.toBe(adapterFor('openai-compatible'));
  });
});

describe('redact', () => {
  it('masks every configured key', () => {
    const configs = providersFromEnv({ OPENAI_API_KEY: 'sk-a1b2c3,sk-d4e5f6', GEMINI_API_KEY: 'AIzaXYZ' });
    expect(redact('auth sk-a1b2c3 then sk-d4e5f6 and AIzaXYZ', configs)).toBe(
      'auth [redacted] then [redacted] and [redacted]',
    );
  });
});
