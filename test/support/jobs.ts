import { until } from '@faregate/testing/env';
import type { Message } from './raw-ws.ts';
import { rng } from '@faregate/testing/random';

/** The fields of API answers the tests read (jobs, errors, admin objects). */
export interface ApiBody {
  id?: string;
  key?: string;
  status?: string;
  last_seq?: number;
  result?: { choices: Array<{ message: { content: string | null } }> };
  error?: { message: string; type: string; param: string | null; code: string | null };
  [k: string]: unknown;
}

/** The answer's text of a finished job. */
export const contentOf = (job: ApiBody): string | null | undefined => job.result?.choices[0]?.message.content;

/** Helpers for tests that drive async jobs over plain HTTP. */
export function jobApi(baseUrl: string) {
  const call = async (key: string, method: string, path: string, body?: unknown) => {
    const r = await fetch(`${baseUrl}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${key}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: r.status, body: (await r.json()) as ApiBody };
  };
  return {
    call,
    async submit(key: string, content: string, model = 'gpt-4o-mini'): Promise<string> {
      const r = await call(key, 'POST', '/v1/jobs', { model, messages: [{ role: 'user', content }] });
      if (r.status !== 202) throw new Error(`submit answered ${r.status}: ${JSON.stringify(r.body)}`);
      return r.body.id as string;
    },
    /** The finished job (`GET /v1/jobs/:id` once its status is terminal). */
    finished(key: string, id: string, timeoutMs = 20_000) {
      return until(
        async () => {
          const r = await call(key, 'GET', `/v1/jobs/${id}`);
          return ['completed', 'failed', 'cancelled'].includes(r.body.status ?? '') ? r.body : undefined;
        },
        { timeoutMs, what: `job ${id} to finish` },
      );
    },
  };
}

/** Text assembled from frames the way a client must: deltas appended, cleared by `reset`. */
export function assemble(frames: readonly Message[]): string {
  let text = '';
  for (const f of frames) {
    if (f.type === 'reset') text = '';
    if (f.type === 'delta' && typeof f.text === 'string') text += f.text;
  }
  return text;
}

/** Deterministic PRNG (mulberry32) so a failing run can be replayed from its logged seed. */
export function seededRandom(seed: number): (lo: number, hi: number) => number {
  const next = rng(seed);
  return (lo, hi) => lo + Math.floor(next() * (hi - lo + 1));
}
