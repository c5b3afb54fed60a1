import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { until } from '@faregate/testing/env';
import { type Stack, startStack } from './support/stack.ts';

let stack: Stack;
beforeAll(async () => {
  // Two members in flight at once: the later ones wait their turn, as in any batch of the engine.
  stack = await startStack({ providers: ['openai'], env: { BATCH_MAX_IN_FLIGHT: '2', BATCH_TICK_MS: '50' } });
  stack.fake.configure({ provider: 'openai', tokens: 30, chunkMs: 5 });
}, 90_000);
afterAll(async () => {
  await stack?.stop();
});

type Msg = {
  v: 1;
  type: string;
  job?: string;
  seq?: number;
  text?: string;
  batch?: string;
  result?: { choices: Array<{ message: { content: string } }> };
};
const auth = () => ({ authorization: `Bearer ${stack.apiKey}`, 'content-type': 'application/json' });
const chat = (content: string) => ({ model: 'gpt-4o-mini', messages: [{ role: 'user', content }] });

function connect(key = stack.apiKey) {
  const ws = new WebSocket(`${stack.url.replace('http', 'ws')}/v1/stream`, {
    headers: { authorization: `Bearer ${key}` },
  });
  const msgs: Msg[] = [];
  const waiters: Array<() => void> = [];
  ws.on('message', (d) => {
    msgs.push(JSON.parse(d.toString()));
    for (const w of waiters.splice(0)) w();
  });
  const opened = new Promise<void>((r) => ws.once('open', () => r()));
  const waitFor = (pred: (m: Msg[]) => boolean) =>
    new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`timeout; got ${JSON.stringify(msgs.slice(-3))}`)), 20_000);
      const check = () => {
        if (pred(msgs)) {
          clearTimeout(t);
          resolve();
        } else waiters.push(check);
      };
      check();
    });
  return { ws, msgs, opened, waitFor };
}

async function createBatch(requests: unknown[]) {
  const r = await fetch(`${stack.url}/v1/jobs`, {
    method: 'POST',
    headers: auth(),
    body: JSON.stringify({ requests }),
  });
  expect(r.status).toBe(202);
  return (await r.json()) as {
    id: string;
    jobs: Array<{ index: number; id?: string; error?: { code: string } }>;
  };
}

describe('job batches', () => {
  it('runs every valid request as its own job, reports the invalid ones at their index, and counts states', async () => {
    const b = await createBatch([
      chat('one'),
      chat('two'),
      { model: 'gpt-4o-mini', messages: [] },
      chat('three'),
    ]);
    expect(b.jobs.map((j) => Boolean(j.id))).toEqual([true, true, false, true]);
    expect(b.jobs[2]?.error?.code).toBe('invalid_request_error');
    const status = await until(async () => {
      const r = await fetch(`${stack.url}/v1/jobs/batches/${b.id}`, { headers: auth() });
      const s = (await r.json()) as { status: string; counts: Record<string, number> };
      return s.status === 'completed' ? s : undefined;
    });
    expect(status.counts).toMatchObject({ completed: 3, rejected: 1, queued: 0, running: 0 });
  });

  it('a member Postgres cannot store (a lone surrogate, a NUL) is refused at its index; the others run', async () => {
    const b = await createBatch([
      { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi \ud800' }] },
      chat('fine'),
      { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'nul \u0000' }] },
      // A valid pair is stored as it is.
      chat('pair \ud83d\ude00'),
    ]);
    expect(b.jobs.map((j) => Boolean(j.id))).toEqual([false, true, false, true]);
    expect(b.jobs[0]?.error).toMatchObject({
      code: 'invalid_request_error',
      message: expect.stringContaining('surrogate'),
    });
    expect(b.jobs[2]?.error).toMatchObject({
      code: 'invalid_request_error',
      message: expect.stringContaining('NUL'),
    });
    const status = await until(async () => {
      const r = await fetch(`${stack.url}/v1/jobs/batches/${b.id}`, { headers: auth() });
      const s = (await r.json()) as { status: string; counts: Record<string, number> };
      return s.status === 'completed' ? s : undefined;
    });
    expect(status.counts).toMatchObject({ completed: 2, rejected: 2 });
  });

  it('streams every member job over one subscription, and resumes each from its own cursor', async () => {
    const b = await createBatch([chat('alpha'), chat('beta'), chat('gamma')]);
    const ids = b.jobs.map((j) => j.id as string);
    const first = connect();
    await first.opened;
    first.ws.send(JSON.stringify({ op: 'subscribe', batch: b.id }));
    // Drop the connection after a few frames of each job (or when the batch ended).
    await first.waitFor(
      (m) =>
        ids.every((id) => m.filter((x) => x.job === id && x.seq).length >= 3) ||
        m.some((x) => x.type === 'batch_end'),
    );
    first.ws.terminate();
    const seen = new Map<string, Msg[]>();
    for (const m of first.msgs) if (m.job && m.seq) seen.set(m.job, [...(seen.get(m.job) ?? []), m]);
    const after = Object.fromEntries(ids.map((id) => [id, seen.get(id)?.at(-1)?.seq ?? 0]));

    const second = connect();
    await second.opened;
    second.ws.send(JSON.stringify({ op: 'subscribe', batch: b.id, after }));
    await second.waitFor((m) => m.some((x) => x.type === 'batch_end'));
    second.ws.close();
    for (const m of second.msgs) if (m.job && m.seq) seen.set(m.job, [...(seen.get(m.job) ?? []), m]);
    for (const id of ids) {
      const frames = seen.get(id) ?? [];
      expect(frames.map((f) => f.seq)).toEqual(frames.map((_, i) => i + 1));
      const text = frames
        .filter((f) => f.type === 'delta')
        .map((f) => f.text ?? '')
        .join('');
      expect(frames.at(-1)?.type).toBe('done');
      expect(text).toBe(frames.at(-1)?.result?.choices[0]?.message.content);
    }
  });

  it('another tenant cannot see or subscribe to a batch', async () => {
    const b = await createBatch([chat('mine')]);
    const adm = { authorization: `Bearer ${stack.adminToken}`, 'content-type': 'application/json' };
    const acct = (await (
      await fetch(`${stack.url}/admin/v1/accounts`, {
        method: 'POST',
        headers: adm,
        body: '{"name":"other"}',
      })
    ).json()) as { id: string };
    const key = (await (
      await fetch(`${stack.url}/admin/v1/keys`, {
        method: 'POST',
        headers: adm,
        body: JSON.stringify({ account_id: acct.id, name: 'k' }),
      })
    ).json()) as { key: string };
    const r = await fetch(`${stack.url}/v1/jobs/batches/${b.id}`, {
      headers: { authorization: `Bearer ${key.key}` },
    });
    expect(r.status).toBe(404);
    const other = connect(key.key);
    await other.opened;
    other.ws.send(JSON.stringify({ op: 'subscribe', batch: b.id }));
    await other.waitFor((m) => m.some((x) => x.type === 'nack'));
    other.ws.close();
    expect(other.msgs.find((x) => x.type === 'nack')).toMatchObject({
      batch: b.id,
      error: { code: 'not_found' },
    });
  });
});

describe('job batches are batches of the one engine', () => {
  type Status = {
    status: string;
    counts: Record<string, number>;
    jobs: Array<{ index: number; id?: string; status: string }>;
  };
  const status = async (id: string) =>
    (await (await fetch(`${stack.url}/v1/jobs/batches/${id}`, { headers: auth() })).json()) as Status;
  const job = async (id: string) => {
    const r = await fetch(`${stack.url}/v1/jobs/${id}`, { headers: auth() });
    return { code: r.status, body: (await r.json()) as { status: string } };
  };

  it('runs members a few at a time from Postgres lines; a member not fed yet is a queued job; each is billed once', async () => {
    stack.fake.configure({ provider: 'openai', tokens: 30, chunkMs: 20 });
    try {
      const b = await createBatch(Array.from({ length: 8 }, (_, i) => chat(`m${i}`)));
      const ids = b.jobs.map((j) => j.id as string);
      // The last member waits behind the first ones (two in flight): looked up, it is queued.
      const last = await job(ids[7] as string);
      expect(last).toMatchObject({ code: 200, body: { status: 'queued' } });
      const lines = await stack.sql.query<{ state: string; job_id: string }>(
        'SELECT state, job_id FROM batch_lines WHERE batch_id = $1 ORDER BY line',
        [b.id],
      );
      expect(lines.rows.map((r) => r.job_id)).toEqual(ids);
      expect(lines.rows.filter((r) => r.state === 'pending').length).toBeGreaterThan(0);
      const done = await until(
        async () => {
          const s = await status(b.id);
          return s.status === 'completed' ? s : undefined;
        },
        { timeoutMs: 60_000, what: 'the job batch to complete' },
      );
      expect(done.counts).toMatchObject({ completed: 8, queued: 0, running: 0 });
      for (const id of ids) expect((await job(id)).body.status).toBe('completed');
      await until(
        async () => {
          const r = await stack.sql.query<{ request_id: string; n: number }>(
            `SELECT request_id, count(*)::int AS n FROM usage_events
             WHERE request_id = ANY($1::text[]) AND outcome = 'success' GROUP BY request_id`,
            [ids],
          );
          return r.rows.length === ids.length && r.rows.every((x) => x.n === 1);
        },
        { timeoutMs: 30_000, what: 'each member billed once' },
      );
      // The engine's record: the batch ends completed, with no result files; it is no Batch API batch.
      await until(
        async () =>
          (await stack.sql.query('SELECT 1 FROM batches WHERE id = $1 AND status = $2', [b.id, 'completed']))
            .rowCount === 1,
        { timeoutMs: 10_000, what: 'the batch row to be finalized' },
      );
      const row = await stack.sql.query<{ status: string; output_file_id: string | null }>(
        'SELECT status, output_file_id FROM batches WHERE id = $1',
        [b.id],
      );
      expect(row.rows[0]?.output_file_id ?? null).toBeNull();
      const listed = (await (
        await fetch(`${stack.url}/v1/batches?limit=100`, { headers: auth() })
      ).json()) as { data: Array<{ id: string }> };
      expect(listed.data.map((x) => x.id)).not.toContain(b.id);
      expect((await fetch(`${stack.url}/v1/batches/${b.id}`, { headers: auth() })).status).toBe(404);
    } finally {
      stack.fake.configure({ provider: 'openai', tokens: 30, chunkMs: 5 });
    }
  });

  it.each(['http', 'ws'] as const)(
    'cancels (%s): members not started end cancelled (as jobs too), what finished is kept',
    async (via) => {
      stack.fake.configure({ provider: 'openai', tokens: 40, chunkMs: 25 });
      try {
        const b = await createBatch(Array.from({ length: 10 }, (_, i) => chat(`c${i}`)));
        const ids = b.jobs.map((j) => j.id as string);
        if (via === 'http') {
          const r = await fetch(`${stack.url}/v1/jobs/batches/${b.id}/cancel`, {
            method: 'POST',
            headers: { authorization: `Bearer ${stack.apiKey}` },
          });
          expect(await r.json()).toMatchObject({ id: b.id, status: 'cancelling' });
        } else {
          // Over the socket: the same engine cancel as the HTTP route.
          const c = connect();
          await c.opened;
          c.ws.send(JSON.stringify({ op: 'cancel', batch: b.id, id: 'c' }));
          await c.waitFor((m) => m.some((x) => x.type === 'ack' && (x as { id?: string }).id === 'c'));
          c.ws.close();
          const row = await stack.sql.query<{ status: string }>('SELECT status FROM batches WHERE id = $1', [
            b.id,
          ]);
          expect(['cancelling', 'cancelled']).toContain(row.rows[0]?.status);
        }
        const done = await until(
          async () => {
            const s = await status(b.id);
            return s.status === 'completed' ? s : undefined;
          },
          { timeoutMs: 60_000, what: 'the cancelled job batch to end' },
        );
        expect(done.counts.cancelled).toBeGreaterThan(0);
        expect((done.counts.completed ?? 0) + (done.counts.cancelled ?? 0)).toBe(10);
        // The last member never started: it is a cancelled job, with a terminal frame to follow.
        expect((await job(ids[9] as string)).body.status).toBe('cancelled');
        const ws = connect();
        await ws.opened;
        ws.ws.send(JSON.stringify({ op: 'subscribe', batch: b.id }));
        await ws.waitFor((m) => m.some((x) => x.type === 'batch_end'));
        ws.ws.close();
      } finally {
        stack.fake.configure({ provider: 'openai', tokens: 30, chunkMs: 5 });
      }
    },
  );
});
