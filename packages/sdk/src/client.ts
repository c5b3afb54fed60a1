import type { ChatCompletion } from '@faregate/contracts/chat';
import type { Frame } from '@faregate/contracts/frames';
import { Assembler } from './assemble.ts';
import { Batches, Files } from './batches.ts';
import { ChatStream } from './chat-stream.ts';
import { StreamConnection } from './connection.ts';
import { FaregateConnectionError } from './errors.ts';
import { HttpClient } from './http.ts';
import type {
  ChatBody,
  ChatStreamBody,
  Job,
  JobResult,
  RequestOptions,
  SubmittedJob,
  SubscribeOptions,
  FaregateOptions,
  WebSocketConstructor,
} from './types.ts';

/**
 * The Faregate client: OpenAI-compatible chat, async jobs, and job streams over one shared
 * WebSocket that resumes by sequence number after any drop.
 *
 *   const sy = new Faregate({ baseURL: 'http://localhost:8080', apiKey });
 *   const { id } = await sy.submit({ model: 'gpt-4o-mini', messages });
 *   for await (const frame of sy.subscribe(id)) { … }   // each frame once, in order
 *   const { text } = await sy.result(id);
 */
export class Faregate {
  readonly baseURL: string;
  /** OpenAI's Files API: upload batch input files, download batch results. */
  readonly files: Files;
  /** OpenAI's Batch API, and a batch's progress over the WebSocket. */
  readonly batches: Batches;
  readonly #http: HttpClient;
  readonly #stream: StreamConnection;

  constructor(opts: FaregateOptions) {
    if (!opts.baseURL) throw new TypeError('Faregate: baseURL is required.');
    if (!opts.apiKey) throw new TypeError('Faregate: apiKey is required.');
    // Accept the OpenAI-style base URL (`…/v1`) as well as the bare origin.
    this.baseURL = opts.baseURL.replace(/\/+$/, '').replace(/\/v1$/, '');
    const headers = opts.headers ?? {};
    this.#http = new HttpClient({
      baseURL: this.baseURL,
      apiKey: opts.apiKey,
      fetch: opts.fetch ?? globalThis.fetch.bind(globalThis),
      maxRetries: opts.maxRetries ?? 2,
      timeoutMs: opts.timeoutMs ?? 600_000,
      headers,
    });
    const ctor = opts.WebSocket;
    this.#stream = new StreamConnection({
      url: `${this.baseURL.replace(/^http/, 'ws')}/v1/stream`,
      headers: { ...headers, authorization: `Bearer ${opts.apiKey}` },
      WebSocket: ctor ? async () => ctor : defaultWebSocket,
      maxReconnects: opts.maxReconnects ?? 10,
      probe: async (id, kind) => {
        if (kind === 'batch') await this.batches.retrieve(id);
        else await this.job(id);
      },
    });
    this.files = new Files(this.#http);
    this.batches = new Batches(this.#http, this.#stream);
  }

  /** `POST /v1/chat/completions`. With `stream: true`, a ChatStream of chunks (SSE). */
  chat(body: ChatStreamBody, opts?: RequestOptions): Promise<ChatStream>;
  chat(body: ChatBody, opts?: RequestOptions): Promise<ChatCompletion>;
  async chat(
    body: ChatBody | ChatStreamBody,
    opts: RequestOptions = {},
  ): Promise<ChatCompletion | ChatStream> {
    if (body.stream !== true) {
      return this.#http.json<ChatCompletion>({
        method: 'POST',
        path: '/v1/chat/completions',
        body,
        signal: opts.signal,
        idempotent: false,
      });
    }
    const controller = new AbortController();
    const signal = opts.signal ? AbortSignal.any([opts.signal, controller.signal]) : controller.signal;
    const res = await this.#http.call({
      method: 'POST',
      path: '/v1/chat/completions',
      body,
      signal,
      idempotent: false,
      accept: 'text/event-stream',
    });
    return new ChatStream(res, controller);
  }

  /** `POST /v1/jobs`: queues the request and returns at once; follow it with `subscribe` or `result`. */
  submit(body: ChatBody, opts: RequestOptions = {}): Promise<SubmittedJob> {
    return this.#http.json<SubmittedJob>({
      method: 'POST',
      path: '/v1/jobs',
      body,
      signal: opts.signal,
      idempotent: false,
    });
  }

  /** `GET /v1/jobs/:id`: status, and the result or error once finished. */
  job(id: string, opts: RequestOptions = {}): Promise<Job> {
    return this.#http.json<Job>({
      method: 'GET',
      path: `/v1/jobs/${encodeURIComponent(id)}`,
      signal: opts.signal,
      idempotent: true,
    });
  }

  /** `POST /v1/jobs/:id/cancel`: stops generation; what was generated is billed. */
  cancel(id: string, opts: RequestOptions = {}): Promise<{ id: string; object: 'job'; status: string }> {
    return this.#http.json({
      method: 'POST',
      path: `/v1/jobs/${encodeURIComponent(id)}/cancel`,
      signal: opts.signal,
      idempotent: true,
    });
  }

  /**
   * The job's frames after `after` (default: from the start), each exactly once and in order,
   * ending after the terminal `done` / `error` frame. Survives dropped connections: it reconnects
   * and resumes from the last frame delivered. Throws on an unknown job or a lasting outage.
   */
  subscribe(jobId: string, opts: SubscribeOptions = {}): AsyncIterableIterator<Frame> {
    return this.#stream.subscribe(jobId, opts.after ?? 0, opts.signal);
  }

  /** Waits for the job and assembles its output (honouring `reset`); throws the job's error. */
  async result(jobId: string, opts: RequestOptions = {}): Promise<JobResult> {
    const a = new Assembler(jobId);
    for await (const f of this.subscribe(jobId, { signal: opts.signal })) a.add(f);
    if (!a.done) throw new FaregateConnectionError(`The stream of job ${jobId} ended without a result.`);
    return a.result();
  }

  /** Closes the shared WebSocket; open subscriptions fail. HTTP calls keep working. */
  close(): void {
    this.#stream.close();
  }

  /** The shared socket, for diagnostics and tests (e.g. to simulate a network drop). */
  get socket(): unknown {
    return this.#stream.socket;
  }
}

/** The `ws` package where it loads (Node), else the platform's WebSocket. */
async function defaultWebSocket(): Promise<WebSocketConstructor> {
  try {
    const mod = (await import('ws')) as { default: unknown };
    return mod.default as WebSocketConstructor;
  } catch {
    const g = (globalThis as { WebSocket?: unknown }).WebSocket;
    if (!g) throw new Error('No WebSocket implementation: install `ws` or pass the WebSocket option.');
    return g as WebSocketConstructor;
  }
}
