import type { FastifyInstance, FastifyReply } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { EmbeddingsRequest } from '@faregate/contracts/embeddings';
import { GatewayError } from '@faregate/contracts/errors';
import { isTerminalRaw, parseFrame } from '@faregate/contracts/frames';
import { servedHeaders } from '@faregate/contracts/route';
import type { FrameQueue } from '@faregate/queue/frame-queue';
import type { IngressDeps } from '../../deps.ts';
import { stoppedError } from './stopped.ts';
import { rawDone } from '../../done-frame.ts';
import { idempotentId, queued, recordJob } from '../../idempotent-call.ts';
import { principalOf } from '../../plugins/auth.ts';
import { requestBody } from '../../request-body.ts';
import { cancelJob, patienceHeader, submitEmbeddings } from '../../submit.ts';

export const EmbeddingsBody = requestBody(['model', 'input'], EmbeddingsRequest);

/**
 * `POST /v1/embeddings` (OpenAI's shape): one job through the one pipeline (auth, routing,
 * admission with a budget hold, the target pool's queue, billing), followed here to its terminal
 * frame like a non-streamed chat request. The frame's result is the answer as it is sent.
 */
export async function embeddingsRoutes(app: FastifyInstance, deps: IngressDeps): Promise<void> {
  app
    .withTypeProvider<ZodTypeProvider>()
    .post('/v1/embeddings', { schema: { body: EmbeddingsBody } }, async (req, reply) => {
      const patienceMs = patienceHeader(
        req.headers['x-faregate-patience-ms'],
        deps.config.REQUEST_TIMEOUT_MS,
      );
      const job = await submitEmbeddings(deps, principalOf(req), req.body, 'sync', {
        id: idempotentId(req),
        patienceMs,
        ...(req.traceparent ? { trace: req.traceparent } : {}),
        beforeQueue: recordJob(deps, req, 'answer'),
      });
      queued(req);
      const { data, frames } = job;
      reply.header('x-request-id', data.id);
      // With an Idempotency-Key the answer is kept for retries: a caller going away does not stop it.
      const keep = req.idempotency !== undefined;
      const done = new AbortController();
      const timer = setTimeout(() => done.abort('deadline'), Math.max(1, data.deadline - Date.now() + 5_000));
      // The caller went away: nothing waits for the vectors, stop the call.
      const onClose = () => {
        if (reply.raw.writableFinished || keep) return;
        done.abort('disconnect');
        if (deps.config.CANCEL_ON_DISCONNECT) void cancelJob(deps, data.id).catch(() => {});
      };
      reply.raw.on('close', onClose);
      if (reply.raw.destroyed) onClose();
      try {
        return await waitForEmbeddings(reply, frames, done.signal);
      } finally {
        clearTimeout(timer);
        job.close();
        reply.raw.off('close', onClose);
        if (done.signal.reason === 'deadline') void cancelJob(deps, data.id).catch(() => {});
      }
    });
}

/** Answers with the embeddings job's terminal frame (its vectors, or its error). */
export async function waitForEmbeddings(reply: FastifyReply, frames: FrameQueue, signal: AbortSignal) {
  for (;;) {
    const raw = await frames.next(signal);
    if (raw === undefined) throw stoppedError(signal);
    if (!isTerminalRaw(raw)) continue;
    // The list's bytes as the worker wrote them: 2,048 vectors of 3,072 floats are ~130 MB of
    // JSON, not parsed, checked and serialized again here.
    const relayed = rawDone(raw, { type: 'embeddings' });
    if (relayed) {
      if (relayed.route) reply.headers(servedHeaders(relayed.route));
      return reply.code(200).type('application/json; charset=utf-8').send(relayed.result);
    }
    const f = parseFrame(raw);
    if (f?.type === 'embeddings') {
      if (f.route) reply.headers(servedHeaders(f.route));
      return reply.code(200).send(f.result);
    }
    if (f?.type === 'error') throw GatewayError.from(f.error);
    throw new GatewayError({ code: 'internal_error', message: 'unreadable frame' });
  }
}
