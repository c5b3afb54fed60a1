import { errorFromBody, FaregateConnectionError, type FaregateError } from './errors.ts';
import { backoffMs } from './backoff.ts';

export interface HttpConfig {
  baseURL: string;
  apiKey: string;
  fetch: typeof fetch;
  maxRetries: number;
  timeoutMs: number;
  headers: Record<string, string>;
}

export interface CallOptions {
  method: 'GET' | 'POST' | 'DELETE';
  path: string;
  /** JSON, or a FormData sent as multipart (its boundary set by fetch). */
  body?: unknown;
  signal?: AbortSignal | undefined;
  /**
   * Safe to send twice (reads, cancel). Calls that create work (chat, submit) are retried only when
   * the connection was refused, i.e. the server certainly never saw them.
   */
  idempotent: boolean;
  accept?: string;
}

const RETRY_STATUSES = new Set([408, 429, 500, 502, 503, 504]);

/** Fetch with the key, a deadline, OpenAI-shaped errors and bounded retries with backoff. */
export class HttpClient {
  readonly #c: HttpConfig;

  constructor(config: HttpConfig) {
    this.#c = config;
  }

  /** The response of a successful (2xx) call; its body is left unread. */
  async call(o: CallOptions): Promise<Response> {
    for (let attempt = 0; ; attempt++) {
      const signal = o.signal
        ? AbortSignal.any([o.signal, AbortSignal.timeout(this.#c.timeoutMs)])
        : AbortSignal.timeout(this.#c.timeoutMs);
      let res: Response;
      const form = o.body instanceof FormData;
      try {
        res = await this.#c.fetch(`${this.#c.baseURL}${o.path}`, {
          method: o.method,
          headers: {
            ...this.#c.headers,
            authorization: `Bearer ${this.#c.apiKey}`,
            accept: o.accept ?? 'application/json',
            ...(o.body === undefined || form ? {} : { 'content-type': 'application/json' }),
          },
          body: o.body === undefined ? undefined : form ? (o.body as FormData) : JSON.stringify(o.body),
          signal,
        });
      } catch (e) {
        if (o.signal?.aborted) throw o.signal.reason;
        const refused = connectionRefused(e);
        if (attempt < this.#c.maxRetries && (o.idempotent || refused) && !signal.aborted) {
          await delay(backoffMs(attempt), o.signal);
          continue;
        }
        const what = signal.aborted ? `timed out after ${this.#c.timeoutMs} ms` : 'failed';
        throw new FaregateConnectionError(`${o.method} ${o.path} ${what}: ${errorMessage(e)}`, e);
      }
      if (res.ok) return res;
      const err = await readError(res);
      if (attempt < this.#c.maxRetries && o.idempotent && RETRY_STATUSES.has(res.status)) {
        await delay(retryAfterMs(res) ?? backoffMs(attempt), o.signal);
        continue;
      }
      throw err;
    }
  }

  async json<T>(o: CallOptions): Promise<T> {
    const res = await this.call(o);
    try {
      return (await res.json()) as T;
    } catch (e) {
      throw new FaregateConnectionError(`${o.method} ${o.path}: the response body was not valid JSON`, e);
    }
  }
}

async function readError(res: Response): Promise<FaregateError> {
  const requestId = res.headers.get('x-request-id') ?? undefined;
  const text = await res.text().catch(() => '');
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  return errorFromBody(body, res.status, requestId);
}

/** `retry-after-ms` or `retry-after` (seconds), capped so a bad hint cannot stall a caller. */
function retryAfterMs(res: Response): number | undefined {
  const ms = Number(res.headers.get('retry-after-ms'));
  if (Number.isFinite(ms) && ms > 0) return Math.min(ms, 60_000);
  const s = Number(res.headers.get('retry-after'));
  if (Number.isFinite(s) && s > 0) return Math.min(s * 1000, 60_000);
  return undefined;
}

function connectionRefused(e: unknown): boolean {
  const code = (e as { cause?: { code?: string } }).cause?.code;
  return code === 'ECONNREFUSED' || code === 'ENOTFOUND' || code === 'EAI_AGAIN';
}

function errorMessage(e: unknown): string {
  const cause = (e as { cause?: { message?: string } }).cause?.message;
  return cause ?? (e instanceof Error ? e.message : String(e));
}

/** Waits `ms`, or rejects with the signal's reason as soon as it aborts. */
export function delay(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(t);
      reject(signal?.reason);
    };
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
