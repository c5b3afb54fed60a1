import { expect } from 'vitest';
import { until } from '@faregate/testing/env';
import type { Stack } from './stack.ts';

/** What a re-run after a crash must leave: the frames a follower saw, the ledger, the fake's calls. */

export type JobFrame = {
  seq: number;
  type: string;
  text?: string;
  result?: { choices: Array<{ message: { content: string } }> };
};

/**
 * A job re-run after its worker died: gapless sequence numbers, a `reset`, then one complete
 * answer (the text after the last reset is the result), settled once as a success.
 */
export async function expectOneAnswerAfterReset(s: Stack, id: string, frames: JobFrame[]) {
  expect(frames.map((f) => f.seq)).toEqual(frames.map((_, i) => i + 1));
  expect(frames.some((f) => f.type === 'reset')).toBe(true);
  let text = '';
  for (const f of frames) {
    if (f.type === 'reset') text = '';
    if (f.type === 'delta') text += f.text ?? '';
  }
  const last = frames.at(-1)!;
  expect(last.type).toBe('done');
  expect(text).toBe(last.result?.choices[0]?.message.content);
  await expectDeadCallBilled(s, id, { streamed: true });
}

/**
 * The call of the attempt the kill cut short is billed (estimated: its prompt, and what it streamed),
 * once, as attempt 1's failed event; the re-run's call as the request's final event.
 */
export async function expectDeadCallBilled(s: Stack, id: string, o: { streamed: boolean }) {
  const rows = await until(async () => {
    const q = await s.sql.query<{
      outcome: string;
      final: boolean;
      attempt: number;
      input_tokens: number;
      output_tokens: number;
    }>(
      'SELECT outcome, final, attempt, input_tokens, output_tokens FROM usage_events WHERE request_id = $1 ORDER BY attempt',
      [id],
    );
    return q.rows.length >= 2 && q.rows.some((r) => r.final) ? q.rows : undefined;
  });
  expect(rows.map((r) => [r.attempt, r.outcome, r.final])).toEqual([
    [1, 'failed', false],
    [2, 'success', true],
  ]);
  const dead = rows[0]!;
  expect(dead.input_tokens).toBeGreaterThan(0);
  if (o.streamed) expect(dead.output_tokens).toBeGreaterThan(0);
  else expect(dead.output_tokens).toBe(0);
}

export const chatCalls = (s: Stack, provider: string) =>
  s.fake
    .calls()
    .filter(
      (c) =>
        c.provider === provider &&
        c.model !== null &&
        c.path.includes(provider === 'anthropic' ? 'messages' : 'chat'),
    );
