import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { BatchCreate } from '@faregate/contracts/openai-batches';
import type { IngressDeps } from '../../deps.ts';
import { idempotentId, recordJob, queued } from '../../idempotent-call.ts';
import { principalOf } from '../../plugins/auth.ts';
import { requestBody } from '../../request-body.ts';
import {
  batchNotFound,
  batchView,
  cancelBatch,
  createBatch,
  listBatches,
  ownedBatch,
} from '../../openai-batches/batches.ts';
import { batchDriverOf } from '../../openai-batches/driver.ts';

const IdParams = z.object({ id: z.string().max(200) });
const CreateBody = requestBody(['input_file_id', 'endpoint', 'completion_window'], BatchCreate);
const ListQuery = z.object({
  after: z.string().max(200).optional(),
  limit: z.coerce.number().int().min(1).max(100).default(20),
});

/**
 * OpenAI's Batch API: a batch runs each line of its input file as an ordinary job (routing, limits,
 * retries, fallback, per-line billing), driven by openai-batches/driver.ts from Postgres.
 */
export async function batchRoutes(app: FastifyInstance, deps: IngressDeps): Promise<void> {
  const typed = app.withTypeProvider<ZodTypeProvider>();

  typed.post('/v1/batches', { schema: { body: CreateBody } }, async (req) => {
    // With an Idempotency-Key the batch is named first and this answer kept: a retried create gets
    // this batch again, even when this answer was lost (idempotency.ts).
    const row = await createBatch(
      deps,
      principalOf(req),
      req.body,
      recordJob(deps, req, 'create'),
      idempotentId(req),
    );
    queued(req);
    // Validate and start it now, not at this ingress's next idle look (up to a second away).
    batchDriverOf(deps)?.kick();
    return batchView(row);
  });

  typed.get('/v1/batches', { schema: { querystring: ListQuery } }, async (req) => {
    const { data, hasMore } = await listBatches(deps, principalOf(req).accountId, req.query);
    return {
      object: 'list',
      data: data.map(batchView),
      first_id: data[0]?.id ?? null,
      last_id: data.at(-1)?.id ?? null,
      has_more: hasMore,
    };
  });

  typed.get('/v1/batches/:id', { schema: { params: IdParams } }, async (req) => {
    const b = await ownedBatch(deps, principalOf(req).accountId, req.params.id);
    if (!b) throw batchNotFound(req.params.id);
    return batchView(b);
  });

  typed.post('/v1/batches/:id/cancel', { schema: { params: IdParams } }, async (req) => {
    const b = await ownedBatch(deps, principalOf(req).accountId, req.params.id);
    if (!b) throw batchNotFound(req.params.id);
    return batchView(await cancelBatch(deps, b));
  });
}
