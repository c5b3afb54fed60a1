import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { type ChatRequest, ChatJobRequest } from '@faregate/contracts/chat';
import { GatewayError } from '@faregate/contracts/errors';
import { type Frame, isTerminal, isTerminalRaw, parseFrame } from '@faregate/contracts/frames';
import { SERVED_HEADERS, servedHeaders } from '@faregate/contracts/route';
import { followJob } from '@faregate/queue/follow';
import { FrameQueue } from '@faregate/queue/frame-queue';
import type { IngressDeps } from '../../deps.ts';
import type { DoorAsks } from '../../routing/router.ts';
import { principalOf } from '../../plugins/auth.ts';
import { setRequestId } from '../../plugins/errors.ts';
import { cancelJob, ChatBody, patienceHeader, submitChat } from '../../submit.ts';
import type { AttachToJob } from '../../idempotency.ts';
import { idempotentId, queued, recordJob } from '../../idempotent-call.ts';
import { ChunkWriter } from '../../sse.ts';
import { markFirstChunk } from '../../metrics.ts';
import type { Door, FrameWriter } from '../../doors/shared.ts';
import { messagesDoor } from '../../doors/messages.ts';
import { responsesDoor } from '../../doors/responses.ts';
import { AnthropicRequest } from '@faregate/contracts/anthropic';
import { ResponsesRequest } from '@faregate/contracts/responses';
import { waitForEmbeddings } from './embeddings.ts';
import { REVOKED_MESSAGE, stoppedError } from './stopped.ts';
import { rawDone } from '../../done-frame.ts';
import { limitHeaders } from '../../request-limits.ts';

export type { Door } from '../../doors/shared.ts';

const chatDoor = (body: ChatRequest): Door => ({
  answer: (result) => result,
  relaysResult: true,
  writer: (id, createdMs) =>
    new ChunkWriter(
      id,
      Math.floor(createdMs / 1000),
      body.stream_options?.include_usage === true,
      body.legacy_functions === true,
    ),
});

/** What a retry of a door's request is answered with: the door, and the request's streaming. */
function doorOf(route: string, raw: unknown): { door: Door; stream: boolean } | undefined {
  switch (route) {
    case '/v1/chat/completions': {
      // The body as the route's schema parsed it (a preHandler runs after validation): the gateway's
      // form of the request, whose legacy `functions` are tools already and marked `legacy_functions`,
      // which the caller's schema would refuse.
      const body = ChatJobRequest.parse(raw);
      return { door: chatDoor(body), stream: body.stream === true };
    }
    case '/v1/messages': {
      const body = AnthropicRequest.parse(raw);
      return { door: messagesDoor(), stream: body.stream === true };
    }
    case '/v1/responses': {
      const body = ResponsesRequest.parse(raw);
      return { door: responsesDoor(body), stream: body.stream === true };
    }
    default:
      return undefined;
  }
}

/**
 * A retry (same Idempotency-Key) of a request that ran as `jobId`: answered from the job, waiting
 * for it if it still runs, by the door it came through (chat completions, messages, responses,
 * embeddings). A streamed request gets the job's frames again as the same SSE events.
 */
export function attachToRunningChat(deps: IngressDeps): AttachToJob {
  return async (req, reply, jobId, createdMs) => {
    const route = req.routeOptions.url ?? '';
    const served = doorOf(route, req.body);
    const queue = new FrameQueue();
    const follow = await followJob(deps.hub, deps.store, jobId, 0, queue.push);
    const done = new AbortController();
    const timer = setTimeout(() => done.abort('deadline'), deps.config.REQUEST_TIMEOUT_MS + 5_000);
    const onClose = () => {
      if (!reply.raw.writableFinished) done.abort('disconnect');
    };
    reply.raw.on('close', onClose);
    if (reply.raw.destroyed) onClose();
    // The key revoked while this retry waits: it stops as the first request does (401), rather than
    // relaying the job's end that the revocation caused ("cancelled by the caller").
    const unwatch = req.credential
      ? deps.auth.watch(req.credential, () => {
          if (!reply.raw.writableFinished && !done.signal.aborted) done.abort('revoked');
        })
      : undefined;
    try {
      setRequestId(reply, jobId);
      if (!served) return await waitForEmbeddings(reply, queue, done.signal);
      if (served.stream) {
        return await relaySse(reply, served.door.writer(jobId, createdMs), jobId, queue, done.signal, () => {
          if (deps.config.CANCEL_ON_DISCONNECT) void cancelJob(deps, jobId).catch(() => {});
        });
      }
      return await waitForResult(reply, queue, done.signal, served.door);
    } finally {
      clearTimeout(timer);
      unwatch?.();
      reply.raw.off('close', onClose);
      follow.close();
      queue.close();
    }
  };
}

/** `POST /v1/chat/completions`: OpenAI-compatible, non-streaming and `stream: true` (SSE). */
export async function chatRoutes(app: FastifyInstance, deps: IngressDeps): Promise<void> {
  app
    .withTypeProvider<ZodTypeProvider>()
    .post('/v1/chat/completions', { schema: { body: ChatBody } }, async (req, reply) =>
      serveChat(deps, req, reply, req.body, chatDoor(req.body)),
    );
}

/**
 * One chat request through the pipeline (admission, queue, the job's frames), answered by `door`:
 * whole, or streamed when `body.stream`. Every door (chat completions, Anthropic messages, OpenAI
 * responses) serves its requests here.
 */
export async function serveChat(
  deps: IngressDeps,
  req: FastifyRequest,
  reply: FastifyReply,
  body: ChatRequest,
  door: Door,
  asks: DoorAsks = {},
): Promise<unknown> {
  const stream = body.stream === true;
  const patienceMs = patienceHeader(req.headers['x-faregate-patience-ms'], deps.config.REQUEST_TIMEOUT_MS);
  const job = await submitChat(deps, principalOf(req), body, stream ? 'stream' : 'sync', {
    id: idempotentId(req),
    patienceMs,
    trace: req.traceparent,
    beforeQueue: recordJob(deps, req, stream ? 'stream' : 'answer'),
    reasoning: asks.reasoning,
    prefill: asks.prefill,
  });
  queued(req);
  const { data, frames } = job;
  setRequestId(reply, data.id);
  // With an Idempotency-Key the outcome is kept for retries: a caller going away does not stop it.
  const keep = req.idempotency !== undefined;
  const done = new AbortController();
  const timer = setTimeout(() => done.abort('deadline'), Math.max(1, data.deadline - Date.now() + 5_000));
  const cancel = () => {
    if (deps.config.CANCEL_ON_DISCONNECT) void cancelJob(deps, data.id).catch(() => {});
  };
  // The caller went away before the answer (closed, or reset, its connection; the response's
  // 'close' fires for both): stop generation (what was generated is still billed). With a key, a
  // non-streaming answer is still awaited (and kept); a stream stops relaying, and its job goes on
  // (a retry replays its frames).
  const onClose = () => {
    if (reply.raw.writableFinished || (keep && !stream)) return;
    done.abort('disconnect');
    if (!keep) cancel();
  };
  reply.raw.on('close', onClose);
  // Gone while it was being admitted: 'close' has already fired.
  if (reply.raw.destroyed) onClose();
  // The key was revoked (through any ingress) while its request ran: the answer stops, whole or
  // streamed, and so does generation (what was generated is billed), as a revoked key's sockets close.
  const unwatch = req.credential
    ? deps.auth.watch(req.credential, () => {
        if (reply.raw.writableFinished || done.signal.aborted) return;
        done.abort('revoked');
        void cancelJob(deps, data.id).catch(() => {});
      })
    : undefined;
  try {
    if (!stream) return await waitForResult(reply, frames, done.signal, door);
    return await relaySse(reply, door.writer(data.id, data.created), data.id, frames, done.signal, cancel);
  } finally {
    clearTimeout(timer);
    unwatch?.();
    job.close();
    reply.raw.off('close', onClose);
    if (done.signal.reason === 'deadline') void cancelJob(deps, data.id).catch(() => {});
  }
}

async function waitForResult(reply: FastifyReply, queue: FrameQueue, signal: AbortSignal, door: Door) {
  for (;;) {
    const raw = await queue.next(signal);
    if (raw === undefined) throw stoppedError(signal);
    // Only the terminal frame matters for a non-streaming caller: parse that one, skip the rest.
    if (!isTerminalRaw(raw)) continue;
    // Chat completions: the result's bytes as the worker wrote them (no parse, no re-serialization).
    const relayed = door.relaysResult ? rawDone(raw) : undefined;
    if (relayed) {
      if (relayed.route) reply.headers(servedHeaders(relayed.route));
      return reply.code(200).type('application/json; charset=utf-8').send(relayed.result);
    }
    const f = readFrame(raw);
    if (f.type === 'done') {
      if (f.route) reply.headers(servedHeaders(f.route));
      return reply.code(200).send(door.answer(f.result, f.at));
    }
    if (f.type === 'error') throw GatewayError.from(f.error);
  }
}

/** A frame of the job this request waits on; one that does not parse is a bug, not the caller's. */
function readFrame(raw: string): Frame {
  const f = parseFrame(raw);
  if (!f) throw new GatewayError({ code: 'internal_error', message: 'unreadable frame' });
  return f;
}

/**
 * Relays a job's frames as a door's SSE stream (`writer`). `abandon` is called when the relay ends the stream
 * before the job ends: generation restarted after content reached the caller (SSE cannot take
 * content back, so the caller gets an error, and nobody can use the rest: with a key, a retry
 * replays the same frames up to the same error).
 */
async function relaySse(
  reply: FastifyReply,
  writer: FrameWriter,
  id: string,
  queue: FrameQueue,
  signal: AbortSignal,
  abandon: () => void,
) {
  let open = false;
  const start = () => {
    if (open) return;
    open = true;
    reply.hijack();
    const served = servedHeaders(writer.route);
    markFirstChunk(reply, served[SERVED_HEADERS.model] ?? '');
    // After hijack Fastify sends nothing (no onSend hook): the headers set on the reply (e.g.
    // Idempotent-Replayed) and a limited key's x-ratelimit-* go out with ours.
    const limits = reply.request.principal?.limitState;
    if (limits) reply.headers(limitHeaders(limits));
    for (const [name, value] of Object.entries(reply.getHeaders())) {
      if (value !== undefined) reply.raw.setHeader(name, value);
    }
    reply.raw.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
      'x-request-id': id,
      // What serves the stream: the call its first chunk comes from (and the calls before it).
      ...served,
    });
  };
  for (;;) {
    // The caller is gone: stop relaying (what is still queued has nowhere to go).
    if (open && signal.aborted && signal.reason === 'disconnect') return reply;
    const raw = await queue.next(signal);
    if (raw === undefined) {
      if (!open) throw stoppedError(signal);
      reply.raw.end(
        signal.reason === 'revoked'
          ? writer.error('invalid_api_key', REVOKED_MESSAGE)
          : writer.error('upstream_timeout', 'The request timed out.'),
      );
      return reply;
    }
    const f = readFrame(raw);
    if (f.type === 'error' && !open) throw GatewayError.from(f.error);
    if (f.type === 'reset' && writer.started) {
      // Content already reached this caller; SSE cannot take it back, so end with an explicit error,
      // and stop the job: running on would bill an answer nobody receives.
      reply.raw.end(
        writer.error(
          'upstream_error',
          'The provider failed mid-answer; the partial answer above is incomplete.',
        ),
      );
      abandon();
      return reply;
    }
    const out = writer.frame(f);
    if (!out) continue;
    start();
    if (!reply.raw.write(out) && !isTerminal(f)) {
      // A destroyed socket never drains (its write returns false): the disconnect wakes us instead.
      await new Promise<void>((resolve) => {
        const wake = () => {
          reply.raw.off('drain', wake);
          signal.removeEventListener('abort', wake);
          resolve();
        };
        reply.raw.on('drain', wake);
        signal.addEventListener('abort', wake);
        if (signal.aborted || reply.raw.destroyed) wake();
      });
    }
    if (isTerminal(f)) {
      reply.raw.end();
      return reply;
    }
  }
}
