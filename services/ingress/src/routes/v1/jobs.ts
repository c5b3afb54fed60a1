import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { GatewayError } from '@faregate/contracts/errors';
import { parseFrame } from '@faregate/contracts/frames';
import type { JobView, SubmittedJob } from '@faregate/contracts/job-api';
import { isFinalState, type JobMeta } from '@faregate/contracts/job-control';
import type { IngressDeps } from '../../deps.ts';
import { principalOf, requireScope } from '../../plugins/auth.ts';
import { batchStatus, endedLines, notFoundBatch, ownedBatch, findJob, submitBatch } from '../../batches.ts';
import { cancelBatch } from '../../openai-batches/batches.ts';
import { idempotentId, recordJob, queued } from '../../idempotent-call.ts';
import { cancelJob, JobsBody, submitChat } from '../../submit.ts';

const IdParams = z.object({ id: z.string() });

/** The 202 of a job submission (and of its retry with the same Idempotency-Key). */
const acceptedJob = (id: string, model: string | undefined, created: number): SubmittedJob => ({
  id,
  object: 'job',
  status: 'queued',
  model: model ?? '',
  created_at: Math.floor(created / 1000),
  stream: { url: '/v1/stream', subscribe: { op: 'subscribe', job: id, after: 0 } },
});

const acceptedBatch = (id: string, created: number, jobs: unknown[]) => ({
  id,
  object: 'job.batch',
  created_at: Math.floor(created / 1000),
  total: jobs.length,
  jobs,
  stream: { url: '/v1/stream', subscribe: { op: 'subscribe', batch: id } },
});

/**
 * A retried submission (same Idempotency-Key) whose first answer was lost: the job or job batch it
 * created, answered as at first (a refused member of a batch is `rejected`: its error is not kept).
 */
export async function submittedAnswer(
  deps: IngressDeps,
  req: FastifyRequest,
  id: string,
): Promise<{ status: number; body: unknown; headers: Record<string, string> } | undefined> {
  const principal = principalOf(req);
  const batch = await ownedBatch(deps, principal, id);
  if (batch) {
    const jobs = batch.jobs.map((job, index) => (job ? { index, id: job } : { index, status: 'rejected' }));
    return {
      status: 202,
      body: acceptedBatch(id, batch.created, jobs),
      headers: { location: `/v1/jobs/batches/${id}` },
    };
  }
  const meta = await findJob(deps, principal, id);
  if (!meta || meta.created === undefined) return undefined;
  return {
    status: 202,
    body: acceptedJob(id, meta.model, meta.created),
    headers: { location: `/v1/jobs/${id}` },
  };
}

const notFound = (id: string) =>
  new GatewayError({ code: 'not_found', message: `No job found with id '${id}'.`, param: 'id' });

/** The public job object: status, and the result (same shape as the HTTP response) or the error. */
async function jobView(deps: IngressDeps, id: string, meta: JobMeta): Promise<JobView> {
  const view: JobView = {
    id,
    object: 'job',
    status: meta.state ?? 'queued',
    model: meta.model,
    created_at: meta.created === undefined ? null : Math.floor(meta.created / 1000),
  };
  if (isFinalState(meta.state)) {
    const last = await deps.store.last(id);
    if (last) {
      const f = parseFrame(last);
      if (f?.type === 'done') {
        view.result = f.result;
        if (f.route) view.attempts = f.route;
      }
      if (f?.type === 'error') view.error = new GatewayError(f.error).toBody().error;
      if (f) view.last_seq = f.seq;
    }
  }
  return view;
}

export async function jobRoutes(app: FastifyInstance, deps: IngressDeps): Promise<void> {
  /** Async submission: same body as chat completions; answers 202 with the job id at once. */
  const typed = app.withTypeProvider<ZodTypeProvider>();
  typed.post('/v1/jobs', { config: { scope: 'chat' }, schema: { body: JobsBody } }, async (req, reply) => {
    // `{ "requests": [ … ] }` submits a batch: every request its own job, grouped under one id.
    // With an Idempotency-Key, what is created is named first: a retry answers with it (idempotency.ts).
    const name = recordJob(deps, req, 'create');
    if ('batch' in req.body) {
      requireScope(principalOf(req), 'batches');
      const b = await submitBatch(deps, principalOf(req), req.body.batch, name);
      queued(req);
      return reply
        .code(202)
        .header('location', `/v1/jobs/batches/${b.id}`)
        .send(acceptedBatch(b.id, b.created, b.entries));
    }
    const body = req.body.request;
    const data = await submitChat(deps, principalOf(req), body, 'async', {
      id: idempotentId(req),
      trace: req.traceparent,
      ...(name ? { beforeQueue: name } : {}),
    });
    queued(req);
    return reply
      .code(202)
      .header('location', `/v1/jobs/${data.id}`)
      .send(acceptedJob(data.id, body.model, data.created));
  });

  typed.get(
    '/v1/jobs/batches/:id',
    { config: { scope: 'batches' }, schema: { params: IdParams } },
    async (req) => {
      const b = await ownedBatch(deps, principalOf(req), req.params.id);
      if (!b) throw notFoundBatch(req.params.id);
      const { states, counts } = await batchStatus(deps, b.jobs, await endedLines(deps, req.params.id));
      const open = counts.queued + counts.running;
      return {
        id: req.params.id,
        object: 'job.batch',
        created_at: Math.floor(b.created / 1000),
        status: open > 0 ? 'in_progress' : 'completed',
        total: b.jobs.length,
        counts,
        jobs: b.jobs.map((id, index) =>
          id ? { index, id, status: states[index] } : { index, status: 'rejected' },
        ),
      };
    },
  );

  typed.post(
    '/v1/jobs/batches/:id/cancel',
    { config: { scope: 'batches' }, schema: { params: IdParams } },
    async (req) => {
      const b = await ownedBatch(deps, principalOf(req), req.params.id);
      if (!b) throw notFoundBatch(req.params.id);
      // The batch engine's cancel: no more members start, those running are stopped.
      const row = await cancelBatch(deps, b.row);
      return { id: req.params.id, object: 'job.batch', status: row.status };
    },
  );

  typed.get('/v1/jobs/:id', { config: { scope: 'chat' }, schema: { params: IdParams } }, async (req) => {
    const meta = await findJob(deps, principalOf(req), req.params.id);
    if (!meta) throw notFound(req.params.id);
    return jobView(deps, req.params.id, meta);
  });

  typed.post(
    '/v1/jobs/:id/cancel',
    { config: { scope: 'chat' }, schema: { params: IdParams } },
    async (req) => {
      const meta = await findJob(deps, principalOf(req), req.params.id);
      if (!meta) throw notFound(req.params.id);
      if (!isFinalState(meta.state)) await cancelJob(deps, req.params.id);
      return {
        id: req.params.id,
        object: 'job',
        status: meta.state === 'queued' || meta.state === 'running' ? 'cancelling' : meta.state,
      };
    },
  );
}
