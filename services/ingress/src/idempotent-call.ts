import type { FastifyRequest } from 'fastify';
import { GatewayError } from '@faregate/contracts/errors';
import type { IngressDeps } from './deps.ts';

/**
 * What a route sees of a request's `Idempotency-Key` (idempotency.ts runs the rest: the record in
 * Redis and Postgres, the replay, the hooks): the key as sent, the id to run under, and the marks a
 * route makes (the job it runs as, that it was queued).
 */

declare module 'fastify' {
  interface FastifyRequest {
    idempotency?: IdempotentCall;
  }
}

const KEY_PATTERN = /^[\x21-\x7e]{1,255}$/;

export interface IdempotentCall {
  key: string;
  /**
   * The id the request runs under (`req_…`, or `batch_…` for `POST /v1/batches`): the one the key's
   * first request was given, kept in Postgres (undefined when Postgres could not be asked).
   */
  id?: string;
  /** This request named `id` (so a refusal forgets it); false: an earlier request with the key did. */
  fresh: boolean;
  /** Set once the request was queued: from then on its outcome is kept, whatever it is. */
  ran: boolean;
  stored: boolean;
}

/**
 * The request's `Idempotency-Key` header (undefined without one), refused unless it is one header of
 * 1 to 255 visible ASCII characters: the one reading of it, for the doors and the admin API alike.
 */
export function idempotencyKeyOf(req: FastifyRequest): string | undefined {
  const header = req.headers['idempotency-key'];
  if (header === undefined) return undefined;
  if (typeof header === 'string' && KEY_PATTERN.test(header)) return header;
  // Node joins repeated headers with ", ": say that, not that the joined value is malformed (and
  // never take the joined value as a key: a retry with either one would not match it).
  const raw = req.raw.rawHeaders;
  let sent = 0;
  for (let i = 0; i < raw.length; i += 2) if (raw[i]?.toLowerCase() === 'idempotency-key') sent++;
  throw new GatewayError({
    code: 'invalid_request_error',
    message:
      sent > 1
        ? 'The request carries more than one Idempotency-Key header: send exactly one.'
        : 'Idempotency-Key must be 1 to 255 visible ASCII characters.',
    param: 'Idempotency-Key',
  });
}

/**
 * Records that the request with this key runs as `job` (a retry meanwhile waits for it, or answers
 * with it): the route's `beforeQueue`, so the record names the job before any worker can start it
 * (written after, a retry arriving as the provider answered found no job and was told to retry
 * later). The outcome is kept only once the job is queued (`queued`): a job refused by the queue
 * keeps nothing. How long the record lives from here, by `kind`:
 * - `answer`: as pending (a door's whole answer, kept once it is sent);
 * - `stream`: the whole TTL at once, as the answer is replayed from the job's frames (kept as long
 *   as the key) and its handler may be gone (caller disconnected) when the job ends;
 * - `create` (`POST /v1/jobs`, `POST /v1/batches`, named before what they create is created): the
 *   whole TTL, so a retry answers with it even after the first request's ingress died (`CREATES`).
 * Undefined without a key.
 */
export function recordJob(
  deps: IngressDeps,
  req: FastifyRequest,
  kind: 'answer' | 'stream' | 'create',
): ((job: { id: string; created: number }) => Promise<void>) | undefined {
  const call = req.idempotency;
  if (!call) return undefined;
  return async (job) => {
    const m = deps.redis.multi().hset(call.key, 'job', job.id, 'created', String(job.created));
    // A stream's record not beyond the job's frames: without them a retry runs anew.
    if (kind === 'stream')
      m.hset(call.key, 'state', 'stream').pexpire(
        call.key,
        Math.min(deps.config.IDEMPOTENCY_TTL_SECONDS, deps.config.STREAM_TTL_SECONDS) * 1000,
      );
    if (kind === 'create') m.pexpire(call.key, deps.config.IDEMPOTENCY_TTL_SECONDS * 1000);
    await m.exec();
  };
}

/**
 * The id a keyed request runs under (`SubmitOptions.id`, or a batch's id): the key's first request's,
 * kept in Postgres; undefined without a key (a fresh id, as for any request).
 */
export function idempotentId(req: FastifyRequest): string | undefined {
  return req.idempotency?.id;
}

/** The keyed request's job is queued: from now on its outcome is kept, whatever it is. */
export function queued(req: FastifyRequest): void {
  if (req.idempotency) req.idempotency.ran = true;
}
