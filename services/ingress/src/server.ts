import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';

/** Listens, and on SIGTERM/SIGINT stops accepting, lets in-flight requests finish, then closes. */
export async function serve(
  app: FastifyInstance,
  opts: { port: number; host: string; log: Logger; onClose: () => Promise<void>; drainMs?: number },
): Promise<void> {
  await app.listen({ port: opts.port, host: opts.host });
  let closing = false;
  const stop = async (signal: string) => {
    if (closing) return;
    closing = true;
    opts.log.info({ signal }, 'draining');
    const force = setTimeout(() => {
      opts.log.warn('drain timeout; closing remaining connections');
      app.server.closeAllConnections();
    }, opts.drainMs ?? 25_000);
    force.unref();
    await app.close();
    await opts.onClose();
    opts.log.info('stopped');
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
}
