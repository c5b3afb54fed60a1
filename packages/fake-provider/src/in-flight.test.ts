import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type FakeProvider, startFakeProvider } from './server.ts';

let fake: FakeProvider;
beforeAll(async () => {
  fake = await startFakeProvider();
});
afterAll(() => fake.close());

const chat = (signal?: AbortSignal) =>
  fetch(`${fake.url}/openai/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: 'Bearer sk-test', 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }),
    signal,
  }).then((r) => r.text());

describe('requests in flight', () => {
  it('counts generation requests open at once per provider, until each answer ended or its connection closed', async () => {
    fake.configure({ provider: 'openai', firstByteMs: 150 });
    await Promise.all([chat(), chat(), chat()]);
    expect(fake.peakInFlight('openai')).toBe(3);
    expect(fake.peakInFlight('anthropic')).toBe(0);
    fake.resetPeakInFlight();
    expect(fake.peakInFlight('openai')).toBe(0);
    // A caller that goes away stops counting when its connection closes.
    const cut = new AbortController();
    const gone = chat(cut.signal).catch(() => 'aborted');
    // Polled with a deadline: aborted once the fake has it open.
    for (const end = Date.now() + 2_000; fake.peakInFlight('openai') === 0 && Date.now() < end; )
      await new Promise((r) => setImmediate(r));
    expect(fake.peakInFlight('openai')).toBe(1);
    cut.abort();
    expect(await gone).toBe('aborted');
    // The cut request stops counting once the fake sees its connection close (a reset keeps what is open).
    for (const end = Date.now() + 2_000; Date.now() < end; ) {
      fake.resetPeakInFlight();
      if (fake.peakInFlight('openai') === 0) break;
      await new Promise((r) => setTimeout(r, 5));
    }
    expect(fake.peakInFlight('openai')).toBe(0);
    await chat();
    expect(fake.peakInFlight('openai')).toBe(1);
    fake.reset();
  });
});
