import { subscribe } from 'node:diagnostics_channel';
import type { IncomingHttpHeaders } from 'node:http';
import { Agent } from 'undici';
import type { HeaderReader, ProviderConfig } from './types.ts';

/**
 * Keep-alive connection pools, one undici Agent per provider config (and connect timeout), reused by
 * every call. This cache is the process's only shared HTTP state; `closeHttp()` drains it at shutdown.
 */
const agents = new Map<string, Agent>();

export function agentFor(config: ProviderConfig, connectMs: number): Agent {
  const key = `${config.id}\u0000${config.baseUrl}\u0000${connectMs}`;
  let agent = agents.get(key);
  if (!agent) {
    agent = new Agent({
      connect: { timeout: connectMs },
      // Providers close idle sockets after ~60 s; staying under that avoids racing their close.
      keepAliveTimeout: 30_000,
      keepAliveMaxTimeout: 55_000,
    });
    agents.set(key, agent);
  }
  return agent;
}

/** Closes every pool (graceful: in-flight requests finish first). */
export async function closeHttp(): Promise<void> {
  const all = [...agents.values()];
  agents.clear();
  await Promise.allSettled(all.map((a) => a.close()));
}

/**
 * The answer's headers as the adapters read them, over undici's object (lower-case names; a
 * repeated header is an array, joined as fetch's `Headers.get` joins it).
 */
export function toHeaders(raw: IncomingHttpHeaders): HeaderReader {
  return {
    get(name: string): string | null {
      const v = raw[name.toLowerCase()];
      if (v === undefined) return null;
      return Array.isArray(v) ? v.join(', ') : v;
    },
  };
}

/** Reads at most `limit` bytes of a body as UTF-8; the rest is discarded (the socket is closed). */
export async function readBounded(
  body: AsyncIterable<unknown> & { destroy(): void },
  limit: number,
): Promise<{ text: string; truncated: boolean }> {
  const chunks: Buffer[] = [];
  let size = 0;
  let truncated = false;
  for await (const c of body) {
    const b = c as Buffer;
    if (size + b.length > limit) {
      chunks.push(b.subarray(0, limit - size));
      truncated = true;
      break;
    }
    chunks.push(b);
    size += b.length;
  }
  if (truncated) body.destroy();
  return { text: Buffer.concat(chunks).toString('utf8'), truncated };
}

/** Requests (undici's request objects) whose write someone waits for, and how to tell them. */
const sentWaiters = new Map<object, () => void>();
subscribe('undici:client:sendHeaders', (message) => {
  const request = (message as { request?: object }).request;
  const done = request && sentWaiters.get(request);
  if (!done) return;
  sentWaiters.delete(request);
  // Published just before the request is written (same tick): run after the write.
  queueMicrotask(done);
});

/** Receives the undici request created while `startAndWatchSent` runs its `start` (else unset). */
let onCreate: ((request: object) => void) | undefined;
subscribe('undici:request:create', (message) => {
  const request = (message as { request?: object }).request;
  if (onCreate && request) onCreate(request);
});

/**
 * Starts a call with `start` and tells when *its* request was written to a socket: `sent` resolves
 * then (or after `maxMs`, or at once if `start` created no undici request synchronously). Keyed to
 * the request `start` creates (undici creates it synchronously inside `Agent.request`, and one
 * thread creates nothing else meanwhile), never to another request of the process. undici writes
 * a request on a reused keep-alive socket from a later `setImmediate`, so whatever the caller does
 * right after `start` returns would otherwise go out before the request. The channels are
 * subscribed once (subscribing per call cost ~1 % of a worker's CPU).
 */
export function startAndWatchSent<T>(start: () => T, maxMs: number): { result: T; sent: Promise<void> } {
  let request: object | undefined;
  onCreate = (r) => {
    request ??= r;
  };
  let result: T;
  try {
    result = start();
  } finally {
    onCreate = undefined;
  }
  const ours = request;
  if (!ours) return { result, sent: Promise.resolve() };
  const sent = new Promise<void>((resolve) => {
    const t = setTimeout(() => {
      sentWaiters.delete(ours);
      resolve();
    }, maxMs);
    sentWaiters.set(ours, () => {
      clearTimeout(t);
      resolve();
    });
  });
  return { result, sent };
}
