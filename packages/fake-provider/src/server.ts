import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { serveControl } from './control.ts';
import { serveEmbeddings } from './embeddings.ts';
import { type ServeDeps, serveGenerate } from './generate.ts';
import { drain, requestIds, sendJson } from './http.ts';
import { serveModels } from './listings.ts';
import { anthropicProtocol } from './anthropic.ts';
import { geminiProtocol } from './gemini.ts';
import { openAIProtocol } from './openai.ts';
import type { Protocol } from './protocol.ts';
import { type ConfigPatch, FakeState } from './state.ts';
import type { CallRecord, FakeConfig, FakeProviderId, Fault } from './types.ts';

export type { CallRecord, Directive, FakeConfig, FakeProviderId, Fault, FaultKind } from './types.ts';

export interface FakeProvider {
  /** `http://host:port`; base URLs are `<url>/openai/v1`, `<url>/anthropic`, `<url>/gemini`, `<url>/llama/v1`. */
  url: string;
  port: number;
  close(): Promise<void>;
  /** A copy of the call log, oldest first. */
  calls(): CallRecord[];
  clearCalls(): void;
  /** Appends faults to the provider's FIFO; each is consumed by one matching request. */
  script(provider: FakeProviderId, faults: Fault[], model?: string): void;
  /** Changes settings for one provider, or all when `provider` is omitted (`models` needs a provider). */
  configure(c: Partial<FakeConfig> & { provider?: FakeProviderId }): void;
  /** Back to the start options: default models, no faults, empty call log. */
  reset(): void;
  /**
   * The most generation requests of `provider` open at once (from arrival until the response ended
   * or the connection closed) since the start, the last `reset`, or the last `resetPeakInFlight`.
   */
  peakInFlight(provider: FakeProviderId): number;
  resetPeakInFlight(): void;
}

type Route = { p: Protocol; rest: string };

/** `/v1beta/models`, `/v1beta/models/{model}`, `/v1beta/models/{model}:{action}` (v1 too). */
const GEMINI_PATH = /^\/v1(?:beta)?\/models(?:\/([^/:]+)(?::(\w+))?)?$/;

/**
 * Starts one HTTP server speaking the OpenAI, Anthropic, Gemini and Ollama protocols under path prefixes.
 * Plain node:http: at zero latency it must cost the gateway's benchmarks next to nothing.
 */
export async function startFakeProvider(
  opts: { port?: number; host?: string } & Partial<FakeConfig> = {},
): Promise<FakeProvider> {
  const { port = 0, host = '127.0.0.1', ...initial } = opts;
  const state = new FakeState(initial);
  const deps: ServeDeps = { state, ids: requestIds() };
  const protocols: Record<string, Protocol> = {
    openai: openAIProtocol('openai'),
    llama: openAIProtocol('llama'),
    anthropic: anthropicProtocol(),
    gemini: geminiProtocol(),
  };

  const server = createServer({ keepAliveTimeout: 65_000 }, (req, res) => {
    handle(req, res).catch((e: unknown) => {
      // A bug in the fake must be loud in tests, never a silent hang.
      if (!res.headersSent) sendJson(res, 500, JSON.stringify({ error: `fake-provider bug: ${String(e)}` }));
      else res.destroy();
    });
  });

  // Generation requests open now and at most, per provider (what a gateway's max-in-flight bounds).
  const open = new Map<FakeProviderId, { now: number; peak: number }>();
  function generate(p: Protocol, req: IncomingMessage, res: ServerResponse, url: URL, model?: string) {
    const o = open.get(p.id) ?? { now: 0, peak: 0 };
    open.set(p.id, o);
    o.now++;
    o.peak = Math.max(o.peak, o.now);
    res.once('close', () => o.now--);
    return serveGenerate(p, deps, req, res, url, model);
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://fake');
    const path = url.pathname;
    if (path === '/healthz') {
      drain(req);
      return sendJson(res, 200, '{"ok":true}');
    }
    if (path.startsWith('/_control/')) return serveControl(state, req, res, url);
    const route = routeOf(path);
    if (!route) {
      drain(req);
      return sendJson(res, 404, JSON.stringify({ error: `fake-provider: no route ${req.method} ${path}` }));
    }
    const { p, rest } = route;
    const method = req.method ?? 'GET';
    if (p.id === 'openai' || p.id === 'llama') {
      if (rest === '/v1/chat/completions' && method === 'POST') return generate(p, req, res, url);
      if (rest === '/v1/embeddings' && method === 'POST') return serveEmbeddings(p, deps, req, res, url);
      if (rest === '/v1/models' && method === 'GET') return serveModels(p, deps, req, res, url, undefined);
      if (rest.startsWith('/v1/models/') && method === 'GET') {
        return serveModels(p, deps, req, res, url, decodeURIComponent(rest.slice('/v1/models/'.length)));
      }
    }
    if (p.id === 'anthropic') {
      if (rest === '/v1/messages' && method === 'POST') return generate(p, req, res, url);
      if (rest === '/v1/models' && method === 'GET') return serveModels(p, deps, req, res, url, undefined);
      if (rest.startsWith('/v1/models/') && method === 'GET') {
        return serveModels(p, deps, req, res, url, decodeURIComponent(rest.slice('/v1/models/'.length)));
      }
    }
    if (p.id === 'gemini') {
      const m = GEMINI_PATH.exec(rest);
      if (m) {
        const model = m[1] === undefined ? undefined : decodeURIComponent(m[1]);
        const action = m[2];
        if (method === 'GET' && !action) return serveModels(p, deps, req, res, url, model);
        if (method === 'POST' && (action === 'generateContent' || action === 'streamGenerateContent')) {
          return generate(p, req, res, url, model);
        }
        if (method === 'POST' && (action === 'embedContent' || action === 'batchEmbedContents')) {
          return serveEmbeddings(p, deps, req, res, url, model, action === 'batchEmbedContents');
        }
      }
    }
    drain(req);
    const e = p.error({ kind: 'not_found', message: `Unknown request URL: ${method} ${path}.` }, '');
    sendJson(res, e.status, e.body);
  }

  function routeOf(path: string): Route | undefined {
    const slash = path.indexOf('/', 1);
    const prefix = slash < 0 ? path.slice(1) : path.slice(1, slash);
    const p = protocols[prefix];
    return p ? { p, rest: slash < 0 ? '' : path.slice(slash) } : undefined;
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const actual = (server.address() as AddressInfo).port;
  const shownHost =
    host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host;

  return {
    url: `http://${shownHost}:${actual}`,
    port: actual,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        // Hung streams and idle keep-alive sockets would otherwise hold close() open forever.
        server.closeAllConnections();
      }),
    calls: () => state.calls.map((c) => ({ ...c })),
    clearCalls: () => {
      state.calls = [];
    },
    script: (provider, faults, model) => state.script(provider, faults, model),
    configure: (c: ConfigPatch) => state.configure(c),
    reset: () => {
      state.reset();
      for (const o of open.values()) o.peak = o.now;
    },
    peakInFlight: (provider) => open.get(provider)?.peak ?? 0,
    resetPeakInFlight: () => {
      for (const o of open.values()) o.peak = o.now;
    },
  };
}
