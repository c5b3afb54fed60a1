import { createServer, type Server } from 'node:http';
import type { Registry } from 'prom-client';

export interface MetricsServer {
  server: Server;
  port: number;
  close(): Promise<void>;
}

export interface MetricsServerOptions {
  /** The process's registry; its text is served first. */
  registry: Registry;
  /** Port to listen on (0: any free port). */
  port: number;
  /** Liveness for `/healthz` (200 while true, 503 otherwise). */
  healthy: () => boolean;
  /** More exposition text appended after the registry's (e.g. BullMQ's queue metrics). */
  extra?: () => Promise<string>;
  host?: string;
}

/**
 * `/metrics` (Prometheus text format) and `/healthz` on a small HTTP server of the process's own,
 * apart from any public port: every service (ingress, workers, billing) serves its metrics this way.
 */
export async function startMetricsServer(opts: MetricsServerOptions): Promise<MetricsServer> {
  const { registry } = opts;
  const server = createServer((req, res) => {
    const path = req.url?.split('?')[0];
    if (req.method === 'GET' && path === '/metrics') {
      Promise.all([registry.metrics(), opts.extra ? opts.extra() : Promise.resolve('')]).then(
        ([own, extra]) => {
          res.writeHead(200, { 'content-type': registry.contentType });
          res.end(extra ? `${own.trimEnd()}\n${extra.trimEnd()}\n` : own);
        },
        () => {
          res.writeHead(500);
          res.end();
        },
      );
    } else if (req.method === 'GET' && path === '/healthz') {
      const ok = opts.healthy();
      res.writeHead(ok ? 200 : 503, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ ok }));
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address();
  return {
    server,
    port: typeof addr === 'object' && addr ? addr.port : opts.port,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/**
 * Merges Prometheus exposition texts that may repeat a family's `# HELP` / `# TYPE` lines (BullMQ's
 * `exportPrometheusMetrics` writes them once per queue): one header per family, its samples together.
 */
export function mergeExposition(texts: string[]): string {
  const families = new Map<string, { head: string[]; samples: string[] }>();
  const family = (name: string) => {
    let f = families.get(name);
    if (!f) {
      f = { head: [], samples: [] };
      families.set(name, f);
    }
    return f;
  };
  for (const text of texts) {
    for (const line of text.split('\n')) {
      if (!line.trim()) continue;
      const m = /^# (HELP|TYPE) (\S+)/.exec(line);
      if (m?.[2]) {
        const f = family(m[2]);
        if (!f.head.some((h) => h.startsWith(`# ${m[1]} `))) f.head.push(line);
      } else if (!line.startsWith('#')) {
        const name = /^[^{\s]+/.exec(line)?.[0] ?? line;
        family(name).samples.push(line);
      }
    }
  }
  return [...families.values()].flatMap((f) => [...f.head, ...f.samples]).join('\n');
}
