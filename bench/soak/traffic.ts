import { performance } from 'node:perf_hooks';
import { Agent, request } from 'undici';
import WebSocket from 'ws';

/**
 * The mixed traffic of the soak and the overload run: chat completions as JSON and as SSE, and async
 * jobs submitted and followed over a few long-lived WebSockets; OpenAI, Anthropic and Gemini models.
 */

export const MODELS = ['openai/gpt-4o-mini', 'anthropic/claude-haiku-4-5', 'gemini/gemini-2.5-flash'];
export type Kind = 'json' | 'sse' | 'ws';

export interface Result {
  kind: Kind;
  /** HTTP status (WS: 200 done, the error frame's status, 0 when the socket failed). */
  status: number;
  ms: number;
  /** The client got a complete answer. */
  complete: boolean;
  /** The gateway's request id, when it named one. */
  id?: string;
  retryAfter?: string;
  /** Error code of a refusal (OpenAI shape), or the client-side failure. */
  error?: string;
}

// Enough sockets for an overload's excess; keep-alive like a real client.
const dispatcher = new Agent({ connections: 2048, keepAliveTimeout: 30_000 });

const body = (rand: () => number, stream: boolean) => ({
  model: MODELS[Math.floor(rand() * MODELS.length)],
  messages: [{ role: 'user', content: `soak ${Math.floor(rand() * 1e9)}: say something short` }],
  max_tokens: 16 + Math.floor(rand() * 32),
  ...(stream ? { stream: true } : {}),
});

export async function http(
  url: string,
  apiKey: string,
  kind: 'json' | 'sse',
  rand: () => number,
  timeoutMs: number,
): Promise<Result> {
  const t0 = performance.now();
  try {
    const r = await request(`${url}/v1/chat/completions`, {
      method: 'POST',
      dispatcher,
      headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify(body(rand, kind === 'sse')),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await r.body.text();
    const id = r.headers['x-request-id'];
    const retryAfter = r.headers['retry-after'];
    const complete =
      r.statusCode === 200 &&
      (kind === 'json' || text.endsWith('data: [DONE]\n\n')) &&
      !text.includes('"error"');
    let error: string | undefined;
    if (r.statusCode !== 200) {
      try {
        error = (JSON.parse(text) as { error?: { code?: string; type?: string } }).error?.code ?? 'no-code';
      } catch {
        error = `not OpenAI's error shape: ${text.slice(0, 80)}`;
      }
    } else if (!complete) error = 'incomplete answer';
    return {
      kind,
      status: r.statusCode,
      ms: performance.now() - t0,
      complete,
      ...(typeof id === 'string' ? { id } : {}),
      ...(typeof retryAfter === 'string' ? { retryAfter } : {}),
      ...(error ? { error } : {}),
    };
  } catch (e) {
    return { kind, status: 0, ms: performance.now() - t0, complete: false, error: (e as Error).name };
  }
}

/** A few WebSockets; each submits jobs (`op: submit`) and resolves each on its done or error frame. */
export class WsClients {
  private readonly sockets: Array<{ ws?: WebSocket; open?: Promise<WebSocket> }>;
  private readonly pending = new Map<
    string,
    { t0: number; ws: WebSocket; resolve: (r: Result) => void; job?: string }
  >();
  private readonly byJob = new Map<string, string>();
  private next = 0;
  private closed = false;

  private readonly url: string;
  private readonly apiKey: string;

  constructor(url: string, apiKey: string, count: number) {
    this.url = url;
    this.apiKey = apiKey;
    this.sockets = Array.from({ length: count }, () => ({}));
  }

  private connect(slot: { ws?: WebSocket; open?: Promise<WebSocket> }): Promise<WebSocket> {
    slot.open ??= new Promise<WebSocket>((resolve, reject) => {
      const ws = new WebSocket(`${this.url.replace(/^http/, 'ws')}/v1/stream`, {
        headers: { authorization: `Bearer ${this.apiKey}` },
      });
      ws.on('open', () => {
        slot.ws = ws;
        resolve(ws);
      });
      ws.on('message', (d) => this.onMessage(String(d)));
      const gone = (err?: Error) => {
        slot.ws = undefined;
        slot.open = undefined;
        reject(err ?? new Error('closed'));
        // Everything this socket was waiting for failed (a real client would resubscribe; we count it).
        for (const [cid, p] of this.pending) {
          if (p.ws === ws) {
            this.pending.delete(cid);
            if (p.job) this.byJob.delete(p.job);
            p.resolve({
              kind: 'ws',
              status: 0,
              ms: performance.now() - p.t0,
              complete: false,
              error: 'ws closed',
            });
          }
        }
      };
      ws.on('close', () => gone());
      ws.on('error', (e) => gone(e));
    });
    return slot.open;
  }

  private onMessage(text: string): void {
    const m = JSON.parse(text) as {
      type?: string;
      op?: string;
      id?: string;
      job?: string;
      seq?: number;
      error?: unknown;
      status?: number;
    };
    if (m.type === 'ack' && m.op === 'submit' && m.id && m.job) {
      const p = this.pending.get(m.id);
      if (p) {
        p.job = m.job;
        this.byJob.set(m.job, m.id);
      }
      return;
    }
    if (m.type === 'nack' && m.id) {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      const e = m.error as { code?: string; status?: number } | undefined;
      p.resolve({
        kind: 'ws',
        status: e?.status ?? 400,
        ms: performance.now() - p.t0,
        complete: false,
        error: e?.code ?? 'nack',
      });
      return;
    }
    if (!m.job || (m.type !== 'done' && m.type !== 'error')) return;
    const cid = this.byJob.get(m.job);
    const p = cid ? this.pending.get(cid) : undefined;
    if (!cid || !p) return;
    this.pending.delete(cid);
    this.byJob.delete(m.job);
    const e = m.error as { code?: string } | undefined;
    p.resolve({
      kind: 'ws',
      status: m.type === 'done' ? 200 : (m.status ?? 500),
      ms: performance.now() - p.t0,
      complete: m.type === 'done',
      id: m.job,
      ...(m.type === 'error' ? { error: e?.code ?? 'error' } : {}),
    });
  }

  async submit(rand: () => number, timeoutMs: number): Promise<Result> {
    const t0 = performance.now();
    if (this.closed) return { kind: 'ws', status: 0, ms: 0, complete: false, error: 'closed' };
    const slot = this.sockets[this.next++ % this.sockets.length]!;
    let ws: WebSocket;
    try {
      ws = slot.ws ?? (await this.connect(slot));
    } catch (e) {
      return {
        kind: 'ws',
        status: 0,
        ms: performance.now() - t0,
        complete: false,
        error: (e as Error).message,
      };
    }
    const cid = `c${Math.floor(rand() * 1e12)}`;
    return new Promise<Result>((resolve) => {
      const timer = setTimeout(() => {
        const p = this.pending.get(cid);
        this.pending.delete(cid);
        if (p?.job) this.byJob.delete(p.job);
        resolve({
          kind: 'ws',
          status: 0,
          ms: performance.now() - t0,
          complete: false,
          error: 'TimeoutError',
        });
      }, timeoutMs);
      const entry: { t0: number; ws: WebSocket; resolve: (r: Result) => void; job?: string } = {
        t0,
        ws,
        resolve: (r: Result) => {
          clearTimeout(timer);
          resolve(r);
        },
      };
      this.pending.set(cid, entry);
      ws.send(JSON.stringify({ v: 1, op: 'submit', id: cid, request: body(rand, false) }));
    });
  }

  close(): void {
    this.closed = true;
    for (const s of this.sockets) s.ws?.close();
  }
}

/** Nearest-rank percentile of unsorted values (NaN when empty). */
export function pct(values: number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length, Math.max(1, Math.ceil((p / 100) * s.length))) - 1]!;
}
