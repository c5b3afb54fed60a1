import { performance } from 'node:perf_hooks';
import WebSocket from 'ws';

/**
 * Time to first token: from sending a streaming request until the first chunk that carries text
 * arrives, read the same way for the fake provider and for the gateway (so client costs cancel out).
 */
const BODY = (model: string) =>
  JSON.stringify({
    model,
    stream: true,
    messages: [{ role: 'user', content: 'Stream a short answer about Jupiter.' }],
  });

/** True once an SSE text holds a `data:` event whose first choice has non-empty content. */
function hasContent(sse: string): boolean {
  for (const event of sse.split('\n\n')) {
    if (!event.startsWith('data: ') || event === 'data: [DONE]') continue;
    try {
      const c = JSON.parse(event.slice(6)) as { choices?: Array<{ delta?: { content?: string | null } }> };
      if (c.choices?.[0]?.delta?.content) return true;
    } catch {
      // An event cut across reads: the next read completes it.
    }
  }
  return false;
}

/** One streamed chat completion: ms to the first text chunk; reads the rest so the connection is reused. */
export async function sseFirstToken(
  url: string,
  headers: Record<string, string>,
  model: string,
): Promise<number> {
  const t0 = performance.now();
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: BODY(model),
  });
  if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}: ${await res.text()}`);
  const decoder = new TextDecoder();
  let buf = '';
  let first: number | undefined;
  for await (const part of res.body) {
    if (first !== undefined) continue;
    buf += decoder.decode(part as Uint8Array, { stream: true });
    if (hasContent(buf)) first = performance.now() - t0;
  }
  if (first === undefined) throw new Error('stream ended without content');
  return first;
}

/** A WebSocket that submits jobs one at a time (`op: submit`) and times the first delta with text. */
export class WsFirstToken {
  readonly #ws: WebSocket;
  #pending:
    | {
        id: string;
        t0: number;
        job?: string;
        ack?: number;
        first?: number;
        resolve: (t: { ackMs: number; firstMs: number }) => void;
        reject: (e: Error) => void;
      }
    | undefined;
  #n = 0;

  private constructor(ws: WebSocket) {
    this.#ws = ws;
    ws.on('message', (d) => {
      const p = this.#pending;
      if (!p) return;
      const m = JSON.parse(d.toString()) as {
        type: string;
        id?: string;
        job?: string;
        text?: string;
        error?: unknown;
      };
      if (m.type === 'ack' && m.id === p.id) {
        p.job = m.job;
        p.ack = performance.now() - p.t0;
      } else if (m.type === 'nack' && m.id === p.id) p.reject(new Error(JSON.stringify(m.error)));
      else if (m.job === p.job && m.type === 'delta' && m.text && p.first === undefined)
        p.first = performance.now() - p.t0;
      else if (m.job === p.job && (m.type === 'done' || m.type === 'error')) {
        this.#pending = undefined;
        if (p.first === undefined) p.reject(new Error(`job ended (${m.type}) without text`));
        else p.resolve({ ackMs: p.ack ?? p.first, firstMs: p.first });
      }
    });
  }

  static async open(baseUrl: string, apiKey: string): Promise<WsFirstToken> {
    const ws = new WebSocket(`${baseUrl.replace(/^http/, 'ws')}/v1/stream`, {
      headers: { authorization: `Bearer ${apiKey}` },
    });
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    return new WsFirstToken(ws);
  }

  /**
   * Submits one job; resolves (after it ended) with ms to its `ack` (admission done: key, budget
   * hold, job record) and to its first text delta.
   */
  once(model: string): Promise<{ ackMs: number; firstMs: number }> {
    return new Promise((resolve, reject) => {
      const id = `b${++this.#n}`;
      this.#pending = { id, t0: performance.now(), resolve, reject };
      this.#ws.send(JSON.stringify({ op: 'submit', id, request: JSON.parse(BODY(model)) }));
    });
  }

  close(): void {
    this.#ws.close();
  }
}
