import { subscribe } from 'node:diagnostics_channel';
import type { IncomingHttpHeaders } from 'node:http';
import { Agent } from 'undici';
import type { ProviderConfig } from './types.ts';

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

export function toHeaders(raw: IncomingHttpHeaders): Headers {
  const h = new Headers();
  for (const [k, v] of Object.entries(raw)) {
    if (v === undefined) continue;
    try {
      if (Array.isArray(v)) for (const x of v) h.append(k, x);
      else h.set(k, v);
    } catch {
      // A header value fetch's Headers refuses (control characters): irrelevant to us, skip it.
    }
  }
  return h;
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

let sentWaiters: Array<() => void> = [];
subscribe('undici:client:sendHeaders', () => {
  if (!sentWaiters.length) return;
  const waiting = sentWaiters;
  sentWaiters = [];
  // Published just before the request is written (same tick): run after the write.
  queueMicrotask(() => {
    for (const f of waiting) f();
  });
});

/**
 * Resolves once undici writes the next request to a socket (or after `maxMs`). A worker issues its
 * own housekeeping I/O (the next fetch, bookkeeping writes) behind the provider call it just
 * started rather than in front of it: on a busy machine each write costs a wake-up elsewhere.
 */
export function afterNextRequestSent(maxMs: number): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(() => {
      sentWaiters = sentWaiters.filter((f) => f !== done);
      resolve();
    }, maxMs);
    function done() {
      clearTimeout(t);
      resolve();
    }
    sentWaiters.push(done);
  });
}
