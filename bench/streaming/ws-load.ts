import { readFile } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import WebSocket from 'ws';

/** What one job looked like from the client: every frame checked, the text checked against the result. */
export interface JobOutcome {
  job: string;
  frames: number;
  deltas: number;
  /** Completion tokens of the result (from its usage). */
  tokens: number;
  /** Frames missing (a gap in seq) or repeated: both must be 0. */
  lost: number;
  duplicated: number;
  /** The text assembled from deltas equals the final result's content. */
  textMatches: boolean;
  terminal: 'done' | 'error';
}

/** The fields of server messages (control replies and job frames) this client reads. */
interface ServerMessage {
  type: string;
  id?: string;
  job: string;
  seq?: number;
  text?: string;
  error?: unknown;
  result?: {
    choices?: Array<{ message?: { content?: string | null } }>;
    usage?: { completion_tokens?: number };
  };
}

interface Tracked {
  next: number;
  frames: number;
  deltas: number;
  lost: number;
  duplicated: number;
  text: string;
  resolve: (o: JobOutcome) => void;
  reject: (e: Error) => void;
}

/** Counters shared by every socket of a measurement. */
export class RelayCounter {
  frames = 0;
  deltas = 0;
  firstAt = 0;
  lastAt = 0;

  hit(isDelta: boolean): void {
    const now = performance.now();
    if (!this.firstAt) this.firstAt = now;
    this.lastAt = now;
    this.frames++;
    if (isDelta) this.deltas++;
  }
}

/**
 * One protocol-v1 connection that follows jobs (submitted over it, or subscribed) and verifies each:
 * seq contiguous from the cursor, no duplicates, a terminal frame, and the assembled text.
 */
export class VerifyingSocket {
  readonly #ws: WebSocket;
  readonly #jobs = new Map<string, Tracked>();
  readonly #submits = new Map<string, Tracked>();
  readonly #counter: RelayCounter | undefined;
  #ids = 0;
  closeCode: number | undefined;

  private constructor(ws: WebSocket, counter?: RelayCounter) {
    this.#ws = ws;
    this.#counter = counter;
    ws.on('message', (d) => this.#onMessage(d.toString()));
    ws.on('close', (code) => {
      this.closeCode = code;
      const err = new Error(`socket closed with ${code}`);
      for (const t of [...this.#jobs.values(), ...this.#submits.values()]) t.reject(err);
      this.#jobs.clear();
      this.#submits.clear();
    });
  }

  static async open(baseUrl: string, apiKey: string, counter?: RelayCounter): Promise<VerifyingSocket> {
    const ws = new WebSocket(`${baseUrl.replace(/^http/, 'ws')}/v1/stream`, {
      headers: { authorization: `Bearer ${apiKey}` },
      perMessageDeflate: false,
    });
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    return new VerifyingSocket(ws, counter);
  }

  /** Submits a job over the socket and follows it to its end. */
  submit(request: unknown): Promise<JobOutcome> {
    const id = `s${++this.#ids}`;
    return new Promise((resolve, reject) => {
      this.#submits.set(id, this.#tracked(1, resolve, reject));
      this.#ws.send(JSON.stringify({ op: 'submit', id, request }));
    });
  }

  /** Follows an existing job from after `after` to its end. */
  subscribe(job: string, after = 0): Promise<JobOutcome> {
    return new Promise((resolve, reject) => {
      this.#jobs.set(job, this.#tracked(after + 1, resolve, reject));
      this.#ws.send(JSON.stringify({ op: 'subscribe', job, after }));
    });
  }

  close(): void {
    this.#ws.close();
  }

  #tracked(next: number, resolve: (o: JobOutcome) => void, reject: (e: Error) => void): Tracked {
    return { next, frames: 0, deltas: 0, lost: 0, duplicated: 0, text: '', resolve, reject };
  }

  #onMessage(raw: string): void {
    const m = JSON.parse(raw) as ServerMessage;
    if (m.seq === undefined) {
      const t = m.id === undefined ? undefined : this.#submits.get(m.id);
      if (!t || m.id === undefined) return;
      this.#submits.delete(m.id);
      if (m.type === 'ack') this.#jobs.set(m.job, t);
      else t.reject(new Error(`refused: ${JSON.stringify(m.error)}`));
      return;
    }
    const t = this.#jobs.get(m.job);
    if (!t) return;
    this.#counter?.hit(m.type === 'delta');
    const seq = m.seq;
    if (seq < t.next) t.duplicated++;
    else if (seq > t.next) t.lost += seq - t.next;
    t.next = Math.max(t.next, seq + 1);
    t.frames++;
    if (m.type === 'delta') {
      t.deltas++;
      t.text += m.text ?? '';
    } else if (m.type === 'reset') {
      t.text = '';
    } else if (m.type === 'done' || m.type === 'error') {
      this.#jobs.delete(m.job);
      const content = m.result?.choices?.[0]?.message?.content ?? '';
      t.resolve({
        job: m.job,
        frames: t.frames,
        deltas: t.deltas,
        tokens: m.result?.usage?.completion_tokens ?? 0,
        lost: t.lost,
        duplicated: t.duplicated,
        textMatches: m.type === 'done' && t.text === content,
        terminal: m.type,
      });
    }
  }
}

/** Resident memory of a process in bytes (Linux /proc), or undefined elsewhere. */
export async function rssBytes(pid: number): Promise<number | undefined> {
  try {
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    const kb = Number(/^VmRSS:\s+(\d+)\s+kB/m.exec(status)?.[1]);
    return Number.isFinite(kb) ? kb * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** Opens `n` sockets, `batch` at a time (a burst of thousands of handshakes at once measures nothing useful). */
export async function openMany(
  n: number,
  baseUrl: string,
  apiKey: string,
  counter?: RelayCounter,
  batch = 200,
): Promise<VerifyingSocket[]> {
  const out: VerifyingSocket[] = [];
  for (let i = 0; i < n; i += batch) {
    const size = Math.min(batch, n - i);
    out.push(
      ...(await Promise.all(
        Array.from({ length: size }, () => VerifyingSocket.open(baseUrl, apiKey, counter)),
      )),
    );
  }
  return out;
}
