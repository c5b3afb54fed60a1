import { once } from 'node:events';
import type { Frame } from '@faregate/contracts/frames';
import { until } from '@faregate/testing/env';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket, { WebSocketServer } from 'ws';
import { StreamConnection } from './connection.ts';
import { FaregateError } from './errors.ts';
import type { WebSocketConstructor } from './types.ts';
import { sampleCompletion as completion } from '@faregate/testing/completion';

/**
 * A stand-in for the gateway's `/v1/stream` (protocol v1) with hooks to misbehave: it serves each
 * job's frames after the cursor, and lets a test drop the socket, close it with 4008, or send
 * duplicates and gaps. The end-to-end behaviour against the real services is in test/streaming.
 */
interface Sub {
  job: string;
  after: number;
  socket: WebSocket;
  connection: number;
}

function frames(job: string, n: number): Frame[] {
  const out: Frame[] = [{ v: 1, job, seq: 1, type: 'accepted', model: 'm', created: 0 }];
  for (let seq = 2; seq < n; seq++) out.push({ v: 1, job, seq, type: 'delta', text: `t${seq} ` });
  out.push({ v: 1, job, seq: n, type: 'done', result: completion(job) });
  return out;
}

async function protocolServer(opts: { reject401?: boolean; overloaded?: number } = {}) {
  /** Subscribes still to refuse as a gateway whose queue store is down does (retryable). */
  let overloaded = opts.overloaded ?? 0;
  const jobs = new Map<string, Frame[]>();
  const subs: Sub[] = [];
  const ops: Array<Record<string, unknown>> = [];
  let connections = 0;
  /** Decides what a subscribe sends; default: every frame after the cursor. */
  let serve = (s: Sub, list: Frame[]) => {
    for (const f of list) if (f.seq > s.after) s.socket.send(JSON.stringify(f));
  };
  const wss = new WebSocketServer({
    port: 0,
    host: '127.0.0.1',
    verifyClient: (_info, cb) => (opts.reject401 ? cb(false, 401) : cb(true)),
  });
  await once(wss, 'listening');
  wss.on('connection', (socket) => {
    const connection = ++connections;
    socket.on('message', (raw) => {
      const m = JSON.parse(raw.toString()) as Record<string, unknown>;
      ops.push({ ...m, connection });
      if (m.op === 'subscribe') {
        const job = m.job as string;
        const list = jobs.get(job);
        if (overloaded > 0) {
          overloaded--;
          const error = {
            message: 'The gateway cannot reach its queue store right now. Try again shortly.',
            type: 'server_error',
            param: null,
            code: 'overloaded',
            retryable: true,
            retryAfterMs: 20,
          };
          socket.send(JSON.stringify({ v: 1, type: 'nack', op: 'subscribe', job, error }));
          return;
        }
        if (!list) {
          const error = {
            message: `No job found with id '${job}'.`,
            type: 'invalid_request_error',
            param: 'job',
            code: 'not_found',
          };
          socket.send(JSON.stringify({ v: 1, type: 'nack', op: 'subscribe', job, error }));
          return;
        }
        socket.send(JSON.stringify({ v: 1, type: 'ack', op: 'subscribe', job, after: m.after }));
        const s = { job, after: m.after as number, socket, connection };
        subs.push(s);
        serve(s, list);
      }
    });
  });
  const url = `ws://127.0.0.1:${(wss.address() as { port: number }).port}`;
  return {
    url,
    jobs,
    subs,
    ops,
    get connections() {
      return connections;
    },
    setServe(fn: typeof serve) {
      serve = fn;
    },
    close: () => {
      for (const c of wss.clients) c.terminate();
      return new Promise((r) => wss.close(r));
    },
  };
}

let cleanup: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanup.reverse()) await c();
  cleanup = [];
});

async function setup(
  opts: {
    reject401?: boolean;
    probe?: (job: string) => Promise<void>;
    heartbeatMs?: number;
    overloaded?: number;
  } = {},
) {
  const server = await protocolServer(opts);
  const conn = new StreamConnection({
    url: server.url,
    headers: {},
    WebSocket: async () => WebSocket as unknown as WebSocketConstructor,
    maxReconnects: 5,
    probe: opts.probe ?? (async () => {}),
    heartbeatMs: opts.heartbeatMs,
  });
  cleanup.push(
    () => conn.close(),
    () => server.close(),
  );
  return { server, conn };
}

async function collect(it: AsyncIterable<Frame>): Promise<Frame[]> {
  const out: Frame[] = [];
  for await (const f of it) out.push(f);
  return out;
}

const seqs = (fs: Frame[]) => fs.map((f) => f.seq);
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

describe('StreamConnection', () => {
  it('replays a job from the start and ends after the terminal frame', async () => {
    const { server, conn } = await setup();
    server.jobs.set('j1', frames('j1', 20));
    const got = await collect(conn.subscribe('j1', 0));
    expect(seqs(got)).toEqual(range(1, 20));
    expect(got.at(-1)?.type).toBe('done');
  });

  it('resumes after a dropped socket from the last frame it delivered', async () => {
    const { server, conn } = await setup();
    server.jobs.set('j1', frames('j1', 50));
    server.setServe((s, list) => {
      for (const f of list) {
        if (f.seq <= s.after) continue;
        // The first connection dies abruptly after frame 17, the second with 4008 after frame 33.
        if (s.connection === 1 && f.seq === 18) return s.socket.terminate();
        if (s.connection === 2 && f.seq === 34) return s.socket.close(4008, 'slow consumer');
        s.socket.send(JSON.stringify(f));
      }
    });
    const got = await collect(conn.subscribe('j1', 0));
    expect(seqs(got)).toEqual(range(1, 50));
    expect(server.subs.map((s) => s.after)).toEqual([0, 17, 33]);
  });

  it('abandons a socket that went silent without closing, and resumes on a new one', async () => {
    const { server, conn } = await setup({ heartbeatMs: 50 });
    server.jobs.set('j1', frames('j1', 12));
    server.setServe((s, list) => {
      // The first connection sends five frames, then nothing ever again (and ignores pings).
      for (const f of list)
        if (f.seq > s.after && (s.connection > 1 || f.seq <= 5)) s.socket.send(JSON.stringify(f));
    });
    const got = await collect(conn.subscribe('j1', 0));
    expect(seqs(got)).toEqual(range(1, 12));
    expect(server.subs.map((s) => [s.connection, s.after])).toEqual([
      [1, 0],
      [2, 5],
    ]);
    expect(server.ops.some((o) => o.op === 'ping' && o.connection === 1)).toBe(true);
  });

  it('drops duplicates, and re-subscribes from its cursor on a gap', async () => {
    const { server, conn } = await setup();
    server.jobs.set('j1', frames('j1', 10));
    server.setServe((s, list) => {
      const send = (seq: number) => s.socket.send(JSON.stringify(list[seq - 1]));
      if (s.after === 0) {
        // 1 2 2 1 3 then 6: a gap after the ack, so 4 and 5 were lost on the way.
        for (const seq of [1, 2, 2, 1, 3, 6]) send(seq);
        return;
      }
      for (const f of list) if (f.seq > s.after) send(f.seq);
    });
    const got = await collect(conn.subscribe('j1', 0));
    expect(seqs(got)).toEqual(range(1, 10));
    expect(server.subs.map((s) => s.after)).toEqual([0, 3]);
  });

  it('subscribes again when the gateway refuses for now (retryable, its queue store down), up to the reconnect bound', async () => {
    const { server, conn } = await setup({ overloaded: 2 });
    server.jobs.set('j1', frames('j1', 6));
    const got = await collect(conn.subscribe('j1', 0));
    expect(seqs(got)).toEqual(range(1, 6));
    expect(server.ops.filter((o) => o.op === 'subscribe')).toHaveLength(3);
    // Refused past the bound (maxReconnects 5 in a row), the reader fails with the gateway's error.
    const worse = await setup({ overloaded: 100 });
    worse.server.jobs.set('j2', frames('j2', 3));
    const err = await collect(worse.conn.subscribe('j2', 0)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FaregateError);
    expect((err as FaregateError).code).toBe('overloaded');
    expect(worse.server.ops.filter((o) => o.op === 'subscribe')).toHaveLength(6);
  });

  it('starts after the given cursor', async () => {
    const { server, conn } = await setup();
    server.jobs.set('j1', frames('j1', 10));
    expect(seqs(await collect(conn.subscribe('j1', 6)))).toEqual([7, 8, 9, 10]);
  });

  it('shares one socket between readers, each from its own cursor', async () => {
    const { server, conn } = await setup();
    server.jobs.set('j1', frames('j1', 12));
    server.jobs.set('j2', frames('j2', 5));
    const [a, b, c] = await Promise.all([
      collect(conn.subscribe('j1', 0)),
      collect(conn.subscribe('j1', 8)),
      collect(conn.subscribe('j2', 0)),
    ]);
    expect(seqs(a)).toEqual(range(1, 12));
    expect(seqs(b)).toEqual(range(9, 12));
    expect(seqs(c)).toEqual(range(1, 5));
    expect(server.connections).toBe(1);
  });

  it('fails with the server error when the job is refused', async () => {
    const { conn } = await setup();
    const err = await collect(conn.subscribe('nope', 0)).catch((e) => e);
    expect(err).toBeInstanceOf(FaregateError);
    expect(err).toMatchObject({ status: 404, code: 'not_found', param: 'job' });
  });

  it('fails at once when the upgrade is refused and the HTTP probe says why', async () => {
    const denied = new FaregateError({
      message: 'bad key',
      type: 'invalid_request_error',
      code: 'invalid_api_key',
      param: null,
      status: 401,
    });
    const { conn } = await setup({
      reject401: true,
      probe: async () => {
        throw denied;
      },
    });
    await expect(collect(conn.subscribe('j1', 0))).rejects.toBe(denied);
  });

  it('stops at an abort signal', async () => {
    const { server, conn } = await setup();
    const list = frames('j1', 10);
    server.jobs.set('j1', list);
    // Only the first three frames; the job never finishes on its own.
    server.setServe((s) => {
      for (const f of list.slice(0, 3)) s.socket.send(JSON.stringify(f));
    });
    const ac = new AbortController();
    const got: Frame[] = [];
    const err = await (async () => {
      for await (const f of conn.subscribe('j1', 0, ac.signal)) {
        got.push(f);
        if (f.seq === 3) ac.abort(new Error('enough'));
      }
    })().catch((e) => e);
    expect(err).toMatchObject({ message: 'enough' });
    expect(seqs(got)).toEqual([1, 2, 3]);
    await until(() => server.ops.some((o) => o.op === 'unsubscribe' && o.job === 'j1'), {
      what: 'unsubscribe',
    });
  });

  it('pauses the server for a slow reader and resumes from its cursor without loss', async () => {
    const { server, conn } = await setup();
    server.jobs.set('big', frames('big', 6000));
    const sub = conn.subscribe('big', 0);
    // Read nothing until the buffer is full and the SDK has asked the server to stop.
    const first = await sub.next();
    expect(first.value?.seq).toBe(1);
    await until(() => server.ops.some((o) => o.op === 'unsubscribe'), { what: 'unsubscribe' });
    const rest = await collect(sub);
    expect(seqs([first.value as Frame, ...rest])).toEqual(range(1, 6000));
    const resumes = server.subs.map((s) => s.after);
    expect(resumes[0]).toBe(0);
    expect(resumes.length).toBeGreaterThan(1);
    expect(resumes[1]).toBeGreaterThanOrEqual(4096);
  });
});
