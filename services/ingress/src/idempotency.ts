import { createHash } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { RedisClient } from '@faregate/queue/redis';
import { z } from 'zod';
import { GatewayError } from '@faregate/contracts/errors';
import { newId } from '@faregate/contracts/ids';
import { claimIdempotencyKey, releaseIdempotencyKey } from '@faregate/db/idempotency-keys';
import { luaScript } from '@faregate/queue/lua';
import type { IngressDeps } from './deps.ts';
import { newBatchId } from './openai-batches/batches.ts';
import { principalOf } from './plugins/auth.ts';
import { setRequestId } from './plugins/errors.ts';
import { idempotencyKeyOf } from './idempotent-call.ts';

/**
 * `Idempotency-Key` on the doors (`POST /v1/chat/completions`, `/v1/messages`, `/v1/responses`,
 * `/v1/embeddings`), `POST /v1/jobs` and `POST /v1/batches` (a retried create answers with the
 * batch it created, never a second batch), after Stripe and the IETF
 * draft: the first request with a key runs, and its response (success or server error alike) is
 * kept for `IDEMPOTENCY_TTL_SECONDS`; a retry with the same key and body gets that response again
 * (`Idempotent-Replayed: true`) and nothing runs or is billed twice. Keys are scoped per API key.
 * A retry while the first request still runs waits for its job and answers with the same result
 * (a caller whose connection dropped simply retries); a streamed request is replayed from its job's
 * stored frames, as the same SSE chunks. The same key with a different body is 422.
 * A request refused before it ran (invalid, unauthorized, over budget) keeps nothing, so it can be
 * retried with the same key once fixed; nor does a 429, so a retry after its `retry-after` runs.
 *
 * The record lives in Redis; which id the key's first request was given (its request id, or its
 * batch's) is also kept in Postgres (`idempotency_keys`), where the money is. A retry that finds no
 * record in Redis, because Redis lost its last writes, runs under that same id: billing charges a
 * request once (its call's usage event has the first call's id, or is a `rerun_calls` row), and a
 * batch create answers with the batch it made. The same key with another body is still a 422 then.
 */

const beginScript = luaScript<{
  keys: [record: string];
  args: [fingerprint: string, pendingTtlMs: number];
  result: (string | null)[];
}>(new URL('./idempotency.begin.lua', import.meta.url), { numberOfKeys: 1 });

const takeoverScript = luaScript<{
  keys: [record: string];
  args: [at: string, staleMs: number];
  result: number;
}>(new URL('./idempotency.takeover.lua', import.meta.url), { numberOfKeys: 1 });

/**
 * The creates (`POST /v1/jobs`, `POST /v1/batches`): each names what it creates in the key's record
 * before creating it (`recordJob`, `create`), so a retry answers with it, however the first request ended
 * (its ingress may have died before answering). One still pending this long after it began, with
 * nothing created, belongs to a request whose ingress died before creating anything (admission
 * takes milliseconds): a retry then takes the key over and creates it.
 */
const CREATES = new Set(['/v1/jobs', '/v1/batches']);
const STALE_CREATE_MS = 60_000;

/**
 * What a create made, as its answer (`status`, `body`) when it exists: how the route answers a
 * retry of a create whose first answer was lost.
 */
export type CreatedAnswer = (
  req: FastifyRequest,
  path: string,
  id: string,
) => Promise<{ status: number; body: unknown; headers?: Record<string, string> } | undefined>;

const ROUTES = new Set([
  '/v1/chat/completions',
  '/v1/messages',
  '/v1/responses',
  '/v1/embeddings',
  '/v1/jobs',
  '/v1/batches',
]);

/** A retry of a request that ran (or runs) as this job, answered from the job: how the route does it. */
export type AttachToJob = (
  req: FastifyRequest,
  reply: FastifyReply,
  jobId: string,
  createdMs: number,
) => Promise<unknown>;

export function registerIdempotency(
  app: FastifyInstance,
  deps: IngressDeps,
  attach: AttachToJob,
  created: CreatedAnswer,
): void {
  const redis: RedisClient = deps.redis;
  const ttlMs = deps.config.IDEMPOTENCY_TTL_SECONDS * 1000;
  // A request that never finishes (its ingress died) frees its key after its deadline.
  const pendingTtlMs = deps.config.REQUEST_TIMEOUT_MS + 60_000;

  app.addHook('preHandler', async (req, reply) => {
    if (req.headers['idempotency-key'] === undefined || req.method !== 'POST') return;
    // The route the router matched, not the raw URL: `/v1/chat/%63ompletions` is the same route.
    const path = req.routeOptions.url ?? '';
    if (!ROUTES.has(path)) return;
    const header = idempotencyKeyOf(req);
    if (header === undefined) return;
    const principal = principalOf(req);
    // Scoped per API key: a key never replays (or learns of) what a sibling key of its tenant ran,
    // which may be a model or an answer it is not allowed.
    const key = recordKey(deps, principal.accountId, principal.keyId, header);
    const fingerprint = createHash('sha256')
      .update(`${path}\n${JSON.stringify(req.body)}`)
      .digest('base64url');
    const r = await beginScript(redis, [key], [fingerprint, pendingTtlMs]);
    if (r[0] === 'new') {
      const offered = path === '/v1/batches' ? newBatchId() : newId('req');
      let named: Awaited<ReturnType<typeof claimIdempotencyKey>> | undefined;
      try {
        named = await claimIdempotencyKey(deps.db, { scope: key, fingerprint, id: offered, ttlMs });
      } catch (err) {
        // Redis's record still guards retries; only a loss of Redis's last writes is uncovered.
        deps.log.warn({ err: String(err) }, 'idempotency: the key could not be kept in Postgres');
      }
      if (named && named.fingerprint !== fingerprint) {
        // Redis lost the record, Postgres kept the key: its first body was another.
        await redis.del(key);
        throw reused();
      }
      req.idempotency = {
        key,
        ran: false,
        stored: false,
        fresh: named?.fresh ?? true,
        ...(named ? { id: named.id } : {}),
      };
      return;
    }
    const [state, fp, status, stored, job, createdMs, headers, at, now] = r;
    if (fp !== fingerprint) throw reused();
    if (state === 'done' && status && stored !== null && stored !== undefined) {
      reply.header('idempotent-replayed', 'true');
      reply.headers(replayedHeaders(headers));
      // The answer's own id, as it was first sent (not this retry's).
      if (job) setRequestId(reply, job);
      return reply
        .code(Number(status))
        .header('content-type', 'application/json; charset=utf-8')
        .send(stored);
    }
    // A door's request (chat, messages, responses, embeddings) answers from its job (waiting for
    // it if it still runs, replaying a stream's frames); a job submission still being queued asks
    // to retry shortly.
    if (job && !CREATES.has(path)) {
      reply.header('idempotent-replayed', 'true');
      return attach(req, reply, job, Number(createdMs));
    }
    if (CREATES.has(path)) {
      // What the first request created (its answer lost with its ingress): answered, and kept as
      // the key's outcome from now on.
      const made = job ? await created(req, path, job) : undefined;
      if (made) {
        req.idempotency = { key, ran: true, stored: false, fresh: false };
        reply.header('idempotent-replayed', 'true');
        if (made.headers) reply.headers(made.headers);
        return reply.code(made.status).send(made.body);
      }
      // Nothing was created, long after it began: its ingress died first. Run it, once.
      const age = Number(now) - Number(at);
      if (at && age >= STALE_CREATE_MS && (await takeoverScript(redis, [key], [at, STALE_CREATE_MS])) === 1) {
        // Under the id the first request named (the one Postgres keeps for the key), if it named one.
        req.idempotency = { key, ran: false, stored: false, fresh: false, ...(job ? { id: job } : {}) };
        return;
      }
      if (at) {
        const wait = Math.max(1, Math.ceil((STALE_CREATE_MS - age) / 1000));
        reply.header('retry-after', String(job ? 1 : Math.min(wait, 60)));
        throw inUse();
      }
    }
    reply.header('retry-after', '1');
    throw inUse();
  });

  app.addHook('onSend', async (req, reply, payload) => {
    const call = req.idempotency;
    if (!call || call.stored) return payload;
    call.stored = true;
    // Refused before it ran: keep nothing, so the same key can be used once the request is fixed.
    // Nor a 429 (the pool paused, or the provider's limit outlasting the caller's patience): it
    // produced nothing and is billed nothing, and kept it would answer every retry the caller makes
    // after its `retry-after` with the same 429 for the key's whole TTL.
    if (!call.ran || reply.statusCode === 429) {
      await redis.del(call.key);
      if (call.fresh && call.id) await releaseIdempotencyKey(deps.db, call.key, call.id);
      return payload;
    }
    const text = typeof payload === 'string' ? payload : Buffer.isBuffer(payload) ? payload.toString() : '';
    await redis
      .multi()
      .hset(
        call.key,
        'state',
        'done',
        'status',
        String(reply.statusCode),
        'body',
        text,
        'headers',
        keptHeaders(reply),
      )
      .pexpire(call.key, ttlMs)
      .exec();
    return payload;
  });
}

const reused = () =>
  new GatewayError({
    code: 'idempotency_key_reused',
    message:
      'This Idempotency-Key was already used for a different request (another body, or another endpoint): use a new key for a new request.',
    param: 'Idempotency-Key',
  });

const inUse = () =>
  new GatewayError({
    code: 'idempotency_key_in_use',
    message: 'A request with this Idempotency-Key is still being processed. Retry shortly.',
    param: 'Idempotency-Key',
    retryable: true,
  });

/** The headers a replay repeats: what served the answer (`x-faregate-*`), as JSON. */
function keptHeaders(reply: FastifyReply): string {
  const kept: Record<string, string> = {};
  for (const [name, value] of Object.entries(reply.getHeaders()))
    if (name.startsWith('x-faregate-') && typeof value === 'string') kept[name] = value;
  return JSON.stringify(kept);
}

function replayedHeaders(stored: string | null | undefined): Record<string, string> {
  if (!stored) return {};
  try {
    const parsed = z.record(z.string(), z.string()).safeParse(JSON.parse(stored));
    if (!parsed.success) return {};
    return Object.fromEntries(Object.entries(parsed.data).filter(([k]) => k.startsWith('x-faregate-')));
  } catch {
    return {};
  }
}

function recordKey(deps: IngressDeps, accountId: string, apiKeyId: string, key: string): string {
  return deps.keys.idempotency(accountId, apiKeyId, createHash('sha256').update(key).digest('base64url'));
}
