import type { FastifyInstance } from 'fastify';
import type { WebSocket } from 'ws';
import { z } from 'zod';
import { ChatRequest } from '@switchyard/contracts/chat';
import { GatewayError } from '@switchyard/contracts/errors';
import { seqOf } from '@switchyard/queue/frame-store';
import { followJob, type FollowHandle } from '@switchyard/queue/follow';
import type { IngressDeps } from '../deps.ts';
import type { Principal } from '../plugins/auth.ts';
import { fromZod } from '../plugins/errors.ts';
import { cancelJob, ownedJob, submitChat } from '../submit.ts';

/** Close codes of protocol v1 (documented in the README). */
export const CLOSE = { slowConsumer: 4008, idle: 4000, badMessage: 1007, tooBig: 1009 } as const;

const MAX_SUBSCRIPTIONS = 256;
/** Bytes queued in the socket before a client counts as too slow (it resumes from its cursor). */
const MAX_BUFFERED = 4 * 1024 * 1024;
const HEARTBEAT_MS = 30_000;

const ClientOp = z.discriminatedUnion('op', [
  z.object({
    op: z.literal('subscribe'),
    job: z.string(),
    after: z.number().int().nonnegative().default(0),
    id: z.string().optional(),
  }),
  z.object({ op: z.literal('unsubscribe'), job: z.string(), id: z.string().optional() }),
  z.object({ op: z.literal('submit'), request: z.unknown(), id: z.string().optional() }),
  z.object({ op: z.literal('cancel'), job: z.string(), id: z.string().optional() }),
  z.object({ op: z.literal('ping'), id: z.string().optional() }),
]);

/** `GET /v1/stream`: WebSocket protocol v1 (subscribe with resume, submit, cancel, ping). */
export async function streamRoutes(app: FastifyInstance, deps: IngressDeps): Promise<void> {
  app.get('/v1/stream', { websocket: true }, (socket: WebSocket, req) => {
    const principal = req.principal as Principal;
    const subs = new Map<string, FollowHandle>();
    let alive = true;
    const send = (s: string) => {
      if (socket.readyState !== socket.OPEN) return;
      if (socket.bufferedAmount > MAX_BUFFERED) {
        socket.close(CLOSE.slowConsumer, 'slow consumer: resume from your last seq');
        return;
      }
      socket.send(s);
    };
    const reply = (o: Record<string, unknown>) => send(JSON.stringify({ v: 1, ...o }));
    const nack = (op: string, id: string | undefined, e: unknown, job?: string) => {
      const ge =
        e instanceof GatewayError
          ? e
          : new GatewayError({ code: 'internal_error', message: 'internal error' });
      if (!(e instanceof GatewayError)) req.log.error({ err: String(e) }, 'ws op failed');
      reply({ type: 'nack', op, ...(id ? { id } : {}), ...(job ? { job } : {}), error: ge.toBody().error });
    };
    const subscribe = async (job: string, after: number) => {
      if (subs.has(job)) subs.get(job)?.close();
      if (subs.size >= MAX_SUBSCRIPTIONS) {
        throw new GatewayError({
          code: 'rate_limit_exceeded',
          message: `At most ${MAX_SUBSCRIPTIONS} subscriptions per connection.`,
        });
      }
      const h = await followJob(deps.hub, deps.store, job, after, (raw) => send(raw));
      if (socket.readyState !== socket.OPEN) {
        h.close();
        return;
      }
      subs.set(job, h);
      void h.ended.then(() => {
        if (subs.get(job) === h) subs.delete(job);
      });
    };

    // Handlers are attached synchronously so no message is lost while async work runs.
    socket.on('message', async (data, isBinary) => {
      let msg: z.infer<typeof ClientOp>;
      try {
        if (isBinary)
          throw new GatewayError({ code: 'invalid_request_error', message: 'Send JSON text messages.' });
        const parsed = ClientOp.safeParse(JSON.parse(data.toString()));
        if (!parsed.success) throw fromZod(parsed.error);
        msg = parsed.data;
      } catch (e) {
        const ge =
          e instanceof GatewayError
            ? e
            : new GatewayError({ code: 'invalid_request_error', message: 'Messages must be JSON.' });
        return nack('unknown', undefined, ge);
      }
      try {
        switch (msg.op) {
          case 'ping':
            return reply({ type: 'pong', ...(msg.id ? { id: msg.id } : {}) });
          case 'subscribe': {
            const meta = await ownedJob(deps, principal, msg.job);
            if (!meta)
              throw new GatewayError({
                code: 'not_found',
                message: `No job found with id '${msg.job}'.`,
                param: 'job',
              });
            // The ack says where the job stands, so a client resuming at (or past) the end of a
            // finished job knows nothing more will come instead of waiting forever.
            const last = await deps.store.last(msg.job);
            const lastSeq = last ? seqOf(last) : 0;
            const finished =
              last !== undefined && (last.includes('"type":"done"') || last.includes('"type":"error"'));
            const ended = finished && msg.after >= lastSeq;
            reply({
              type: 'ack',
              op: 'subscribe',
              job: msg.job,
              after: msg.after,
              last_seq: lastSeq,
              state: meta.state ?? 'queued',
              ...(ended ? { ended: true } : {}),
              ...(msg.id ? { id: msg.id } : {}),
            });
            if (ended) return;
            return await subscribe(msg.job, msg.after);
          }
          case 'unsubscribe':
            subs.get(msg.job)?.close();
            subs.delete(msg.job);
            return reply({ type: 'ack', op: 'unsubscribe', job: msg.job, ...(msg.id ? { id: msg.id } : {}) });
          case 'cancel': {
            const meta = await ownedJob(deps, principal, msg.job);
            if (!meta)
              throw new GatewayError({
                code: 'not_found',
                message: `No job found with id '${msg.job}'.`,
                param: 'job',
              });
            await cancelJob(deps, msg.job);
            return reply({ type: 'ack', op: 'cancel', job: msg.job, ...(msg.id ? { id: msg.id } : {}) });
          }
          case 'submit': {
            const r = ChatRequest.safeParse(msg.request);
            if (!r.success) throw fromZod(r.error, 'request');
            const data = await submitChat(
              deps,
              principal,
              { ...r.data, stream: false },
              {
                deltas: true,
                accepted: true,
                beforeEnqueue: async (id) => {
                  reply({ type: 'ack', op: 'submit', job: id, ...(msg.id ? { id: msg.id } : {}) });
                  await subscribe(id, 0);
                },
              },
            );
            void data;
            return;
          }
        }
      } catch (e) {
        return nack(msg.op, msg.id, e, 'job' in msg ? msg.job : undefined);
      }
    });

    socket.on('pong', () => {
      alive = true;
    });
    const heartbeat = setInterval(() => {
      if (!alive) {
        socket.terminate();
        return;
      }
      alive = false;
      socket.ping();
    }, HEARTBEAT_MS);
    socket.on('close', () => {
      clearInterval(heartbeat);
      for (const h of subs.values()) h.close();
      subs.clear();
    });
  });
}
