import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { loadGatewayConfig } from './gateway-config.ts';

const shipped = fileURLToPath(new URL('../../../faregate.config.json', import.meta.url));

describe('the shipped routing file', () => {
  it('sets no limit of its own: each comes from the environment, and is off when unset', () => {
    const c = loadGatewayConfig(shipped, {});
    for (const p of ['openai', 'anthropic', 'gemini', 'llama'])
      expect(c.providers[p]?.limits, p).toEqual({
        rpm: undefined,
        tpm: undefined,
        maxInFlight: undefined,
      });
    const set = loadGatewayConfig(shipped, { OPENAI_RPM: '3000', OPENAI_MAX_IN_FLIGHT: '50' });
    expect(set.providers.openai?.limits).toMatchObject({ rpm: 3000, maxInFlight: 50 });
    expect(set.providers.openai?.limits.tpm).toBeUndefined();
  });

  it('refuses a limit that is not a positive whole number', () => {
    expect(() => loadGatewayConfig(shipped, { OPENAI_RPM: 'lots' })).toThrow();
    expect(() => loadGatewayConfig(shipped, { OPENAI_RPM: '0' })).toThrow();
  });
});
