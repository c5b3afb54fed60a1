import { z } from 'zod';
import { ChatRequest, requestedMaxTokens } from '@faregate/contracts/chat';
import { GatewayError } from '@faregate/contracts/errors';
import type { JobMeta } from '@faregate/contracts/job-control';
import type { EmbeddingsRequest } from '@faregate/contracts/embeddings';
import { type JobData, recordTtlSeconds } from '@faregate/contracts/jobs';
import { newId } from '@faregate/contracts/ids';
import { readJobMeta, requestCancel } from '@faregate/queue/job-control';
import type { IngressDeps } from './deps.ts';
import type { Principal } from './plugins/auth.ts';
import { requireScope } from './plugins/auth.ts';
import { fromZod, isRedisFull, verbatim } from './plugins/errors.ts';
import { type FollowHandle, followJob } from '@faregate/queue/follow';
import { FrameQueue } from '@faregate/queue/frame-queue';
import type { FrameStore } from '@faregate/queue/frame-store';
import { isObject, requestBody } from './request-body.ts';
import { admissionTokens, admitRequest } from './request-limits.ts';
import { adjustRequestLimits } from '@faregate/queue/request-limits';
import type { RoutePlan } from './routing/router.ts';

/**
 * A chat request body, with OpenAI-style messages for the common mistakes (not an object, no model,
 * no messages) before the schema's own.
 */
export const ChatBody = requestBody(['model', 'messages'], ChatRequest);
export type ChatBody = z.infer<typeof ChatBody>;

/** Validates a chat body that is not a route's whole body (a batch member, a retry's stored body). */
export function parseChatRequest(body: unknown): ChatRequest {
  const r = ChatBody.safeParse(body);
  if (!r.success) throw fromZod(r.error);
  return r.data;
}

/**
 * `POST /v1/jobs`: one chat request, or `{ "requests": [ … ] }` (a batch; each member is validated on
 * its own, and a bad one is reported at its index).
 */
export const JobsBody = z
  .unknown()
  .transform((b, ctx): { batch: unknown[] } | { request: ChatRequest } | typeof z.NEVER => {
    if (isObject(b) && 'requests' in b) {
      if (!Array.isArray(b.requests) || Object.keys(b).length !== 1) {
        ctx.addIssue({
          code: 'custom',
          message: 'A batch body is { "requests": [ <chat request>, … ] }.',
          path: ['requests'],
          params: verbatim,
        });
        return z.NEVER;
      }
      return { batch: b.requests };
    }
    const r = ChatBody.safeParse(b);
    if (r.success) return { request: r.data };
    for (const issue of r.error.issues) ctx.addIssue({ ...issue });
    return z.NEVER;
  });

/**
 * How the caller takes the answer, which decides everything else about a submission:
 * - `sync`: an HTTP caller waiting for the whole answer: no delta frames, the short frame TTL;
 * - `stream`: an HTTP caller reading SSE: delta frames, the long replay window;
 * - both follow the job's frames on this process's reply channel from before it is queued (the
 *   returned `FollowedJob`), and may take the pool's fast lane;
 * - `async`: `POST /v1/jobs` and job batch members: an `accepted` frame records the job with its
 *   first frame (it is looked up right after the 202), always queued on BullMQ;
 * - `batch`: an OpenAI batch line: like `async`, but no delta frames (the output file needs only the
 *   done frame or the error), its record kept as long (`retain`), and its frames published on this
 *   process's reply channel too (`reply`: the batch driver here collects the line from there). Its
 *   record gets its whole TTL at once (`recovered`): should the process die before the job is queued,
 *   the driver that takes the batch over drops the record and feeds the line again;
 * - `ws`: a WebSocket submit: like `async`, and may take the fast lane (the socket waits on it).
 */
/**
 * A request refused 402 for its worst-case cost. `held`: only other work's holds make it short (the
 * balance, or the key's spend limit, alone covers it), so it may run once that work settles; a
 * batch line waits for that rather than failing.
 */
export class QuotaRefusal extends GatewayError {
  readonly held: boolean;
  constructor(held: boolean, message: string) {
    super({ code: 'insufficient_quota', message });
    this.held = held;
  }
}

export type SubmitMode = 'sync' | 'stream' | 'async' | 'batch' | 'ws';

const MODES: Record<
  SubmitMode,
  {
    deltas: boolean;
    retain: boolean;
    accepted: boolean;
    follow: boolean;
    reply: boolean;
    interactive: boolean;
    /** Streamed to an SSE door, which cannot take content back (JobData.contentFinal). */
    contentFinal?: true;
    recovered?: true;
  }
> = {
  sync: { deltas: false, retain: false, accepted: false, follow: true, reply: true, interactive: true },
  stream: {
    deltas: true,
    retain: false,
    accepted: false,
    follow: true,
    reply: true,
    interactive: true,
    contentFinal: true,
  },
  async: { deltas: true, retain: false, accepted: true, follow: false, reply: false, interactive: false },
  batch: {
    deltas: false,
    retain: true,
    accepted: true,
    follow: false,
    reply: true,
    interactive: false,
    recovered: true,
  },
  ws: { deltas: true, retain: false, accepted: true, follow: false, reply: false, interactive: true },
};

export interface SubmitOptions {
  /** The caller's patience with a rate-limited provider (`x-faregate-patience-ms`); default RATE_LIMIT_PATIENCE_MS. */
  patienceMs?: number;
  /** The submitting request's trace context (`traceparent`, tracing on): the worker's spans join it. */
  trace?: string;
  /**
   * The job id, when the caller chose it (a batch line's, derived from the batch and the line, so a
   * line submitted again after a crash is the same job); otherwise a fresh one.
   */
  id?: string | undefined;
  /** BullMQ priority (async only): batch lines queue behind interactive and async jobs (which have none). */
  priority?: number;
  /**
   * Runs once the request is admitted, before its job is queued (a throw refuses it, releasing the
   * hold): what must be recorded before any worker can run the job (an Idempotency-Key's job id).
   */
  beforeQueue?: (data: JobData) => Promise<void>;
  /** The door's parameter that asked for reasoning (`thinking`, `reasoning.effort`): only reasoning models serve it. */
  reasoning?: string | undefined;
  /** Where the door's request has an Anthropic prefill (DoorAsks.prefill): only Anthropic models continue one. */
  prefill?: string | undefined;
  /**
   * When the job must have ended (epoch ms); default REQUEST_TIMEOUT_MS from now. A batch line gets
   * longer (openai-batches/driver.ts): nobody waits on it, and a call that hangs for a whole request
   * timeout must leave it time to retry or fall back.
   */
  deadline?: number;
}

/**
 * `x-faregate-patience-ms`: how long an interactive request may wait out a rate-limited provider
 * (0 to the request timeout); absent: the default. Anything else is the caller's error.
 */
export function patienceHeader(value: string | string[] | undefined, maxMs: number): number | undefined {
  if (value === undefined) return undefined;
  const n = typeof value === 'string' && /^\d{1,9}$/.test(value) ? Number(value) : Number.NaN;
  if (!(n >= 0 && n <= maxMs))
    throw new GatewayError({
      code: 'invalid_request_error',
      message: `The x-faregate-patience-ms header must be a whole number of milliseconds from 0 to ${maxMs}.`,
      param: 'x-faregate-patience-ms',
    });
  return n;
}

/** A job submitted by a caller that waits on it here: its frames, from seq 1. */
export interface FollowedJob {
  data: JobData;
  frames: FrameQueue;
  /** Stops following (idempotent). */
  close(): void;
}

/**
 * Admission and enqueue: model routing, model permission, the budget hold, the job record, and
 * exactly one BullMQ job (or fast-lane entry). Nothing is queued unless every check passed.
 */
export async function submitChat(
  deps: IngressDeps,
  principal: Principal,
  request: ChatRequest,
  mode: 'sync' | 'stream',
  opts?: SubmitOptions,
): Promise<FollowedJob>;
export async function submitChat(
  deps: IngressDeps,
  principal: Principal,
  request: ChatRequest,
  mode: 'async' | 'batch' | 'ws',
  opts?: SubmitOptions,
): Promise<JobData>;
export async function submitChat(
  deps: IngressDeps,
  principal: Principal,
  request: ChatRequest,
  mode: SubmitMode,
  opts: SubmitOptions = {},
): Promise<FollowedJob | JobData> {
  // Answered as a job, never as an SSE stream.
  if (MODES[mode].accepted) request = { ...request, stream: false };
  requireScope(principal, 'chat');
  const route = deps.router.plan(request, { reasoning: opts.reasoning, prefill: opts.prefill });
  // Every choice (n > 1) may use the whole output cap.
  const max = requestedMaxTokens(request);
  const maxOut = max === undefined ? undefined : max * (request.n ?? 1);
  return enqueue(deps, principal, { request }, route, mode, opts, maxOut);
}

/**
 * `POST /v1/embeddings` (and, later, an embeddings batch line): the same admission and enqueue as
 * chat, for a job whose operation is `embeddings`. An embeddings answer has no deltas: `sync`
 * follows it here, `async` records it like any job. Inference needs the `chat` scope.
 */
export async function submitEmbeddings(
  deps: IngressDeps,
  principal: Principal,
  request: EmbeddingsRequest,
  mode: 'sync',
  opts?: SubmitOptions,
): Promise<FollowedJob>;
export async function submitEmbeddings(
  deps: IngressDeps,
  principal: Principal,
  request: EmbeddingsRequest,
  mode: 'async' | 'batch',
  opts?: SubmitOptions,
): Promise<JobData>;
export async function submitEmbeddings(
  deps: IngressDeps,
  principal: Principal,
  request: EmbeddingsRequest,
  mode: 'sync' | 'async' | 'batch',
  opts: SubmitOptions = {},
): Promise<FollowedJob | JobData> {
  requireScope(principal, 'chat');
  const route = deps.router.planEmbeddings(request);
  return enqueue(deps, principal, { op: 'embeddings', request }, route, mode, opts, 0);
}

/** The operation a job runs, with its request. */
type Operation = { op?: undefined; request: ChatRequest } | { op: 'embeddings'; request: EmbeddingsRequest };

/**
 * Narrows `route` to the candidates the caller's key may use (`allowed_models`); the model asked for
 * must be one of them: a fallback never stands in for a model the key may not call.
 */
export function keepPermitted(
  deps: IngressDeps,
  principal: Principal,
  route: RoutePlan,
  model: string,
): void {
  if (!principal.allowedModels) return;
  const permitted = deps.router.permitted(route, model, principal.allowedModels);
  // The model it may use has no live pool, and no fallback it may use stands in: that pool's 503.
  if (permitted.targets === 0 && route.standingIn && principal.allowedModels.includes(model))
    throw route.standingIn;
  if (permitted.targets === 0) {
    throw new GatewayError({
      code: 'permission_denied',
      message: `This API key is not allowed to use the model \`${model}\`.`,
      param: 'model',
    });
  }
  // The route, costed for what the key may call: a fallback it may not use is not held for either.
  Object.assign(route, permitted);
}

async function enqueue(
  deps: IngressDeps,
  principal: Principal,
  operation: Operation,
  route: RoutePlan,
  mode: SubmitMode,
  opts: SubmitOptions,
  maxOutputTokens: number | undefined,
): Promise<FollowedJob | JobData> {
  const m = MODES[mode];
  const { request } = operation;
  keepPermitted(deps, principal, route, request.model);
  // The hold covers every call that may produce tokens (a retry or fallback hop bills again): the
  // worker refuses a call past `holdCalls`, so settlement never exceeds the hold.
  // Shed before anything is held or queued: the pool already has more than it can do in time.
  if (m.interactive) deps.backlogGate?.admit(route.plan[0]?.provider ?? '');
  const holdCalls = deps.config.HOLD_CALLS;
  const holdMicros = route.callMicros * BigInt(holdCalls);
  const id = opts.id ?? newId('req');
  const now = Date.now();
  const deadline = opts.deadline ?? now + deps.config.REQUEST_TIMEOUT_MS;
  const data: JobData = {
    ...operation,
    v: 1,
    id,
    account: principal.accountId,
    key: principal.keyId,
    requestedModel: request.model,
    plan: route.plan,
    hop: 0,
    deltas: m.deltas,
    ...(m.retain ? { retain: true as const } : {}),
    ...(m.contentFinal ? { contentFinal: true as const } : {}),
    created: now,
    deadline,
    ...(m.reply && deps.hub.replyChannel ? { replyTo: deps.hub.replyChannel } : {}),
    holdCalls,
    callMicros: route.callMicros.toString(),
    // A caller waiting on the answer waits out a rate-limited provider only this long (then a
    // fallback, or the 429 with its retry-after); an async job waits as long as its deadline allows.
    ...(m.interactive
      ? { patienceMs: opts.patienceMs ?? principal.patienceMs ?? deps.config.RATE_LIMIT_PATIENCE_MS }
      : {}),
    ...(opts.trace ? { trace: opts.trace } : {}),
    attempts: [],
  };
  const ttlMs = recordTtlSeconds(data, deps.config) * 1000;
  // Admission (budget; the key's request limits, one Redis script, only for a limited key) and the
  // caller's subscription are independent: run them together. Nothing is recorded or queued unless
  // all succeeded.
  const limits = principal.limits;
  const admitted = admissionTokens(route.inputTokensBound, maxOutputTokens);
  // A tokens limit counts what the calls used beyond the admission's estimate too (the worker does).
  if (limits && (limits.keyTpm || limits.accountTpm)) data.limits = { ...limits, admitted };
  const frames = m.follow ? new FrameQueue() : undefined;
  let follow: FollowHandle | undefined;
  const stopFollowing = () => {
    follow?.close();
    frames?.close();
  };
  const [hold, followed, limited] = await Promise.allSettled([
    deps.budget.admit({
      requestId: id,
      accountId: principal.accountId,
      keyId: principal.keyId,
      micros: holdMicros,
      deadline,
    }),
    (async () => {
      // The job is not queued yet: no backlog to read; its frames come on our reply channel.
      if (frames)
        follow = await followJob(deps.hub, deps.store, id, 0, frames.push, { fresh: true, reply: true });
    })(),
    limits &&
      admitRequest(deps.redis, deps.keys, principal, limits, admitted, (s) => {
        principal.limitState = s;
      }),
  ]);
  if (hold.status === 'rejected') {
    stopFollowing();
    throw hold.reason;
  }
  if (limited.status === 'rejected') {
    stopFollowing();
    if (hold.value.ok) await deps.budget.release(hold.value.reservation).catch(() => {});
    throw limited.reason;
  }
  if (!hold.value.ok) {
    stopFollowing();
    // Refused for its cost: what its admission took from the key's limits goes back (nothing ran).
    if (limits && limited.status === 'fulfilled') {
      await adjustRequestLimits(deps.redis, deps.keys, principal, limits, -admitted, -1).catch(() => {});
      // The 402's x-ratelimit-* say so too.
      const st = principal.limitState;
      if (st?.requests) st.requests.remaining = Math.min(st.requests.limit, st.requests.remaining + 1);
      if (st?.tokens) st.tokens.remaining = Math.min(st.tokens.limit, st.tokens.remaining + admitted);
    }
    throw new QuotaRefusal(
      hold.value.held,
      hold.value.reason === 'key_limit'
        ? "This request would exceed this API key's spend limit."
        : operation.op === 'embeddings'
          ? 'Your balance does not cover the maximum cost of this request. Add credit or send fewer or shorter inputs.'
          : maxOutputTokens === undefined
            ? "Your balance does not cover the maximum cost of this request: without 'max_tokens' it is the model's whole output limit. Add credit or set 'max_tokens'."
            : `Your balance does not cover the maximum cost of this request. Add credit or lower '${'max_completion_tokens' in request && request.max_completion_tokens != null ? 'max_completion_tokens' : 'max_tokens'}'.`,
    );
  }
  const reservation = hold.value.reservation;
  if (reservation.leased) data.hold = reservation.hold;
  let recorded = false;
  // The job was named to the request's Idempotency-Key record (`beforeQueue`): a retry may follow it.
  let named = false;
  try {
    if (followed.status === 'rejected') throw followed.reason;
    if (m.accepted) {
      const created = Math.floor(now / 1000);
      // Async jobs are looked up (GET, subscribe) right after the 202: the record goes with the
      // first frame. A request answered over HTTP is recorded by its first attempt instead. Until
      // the job is queued the record lives only RECORD_UNTIL_QUEUED_MS: an ingress that dies in
      // between (no 202 sent) leaves no job `queued` for ever (unless its submitter recovers it).
      await deps.store.append(id, [{ type: 'accepted', model: request.model, created }], {
        owner: '',
        ttlMs: m.recovered ? ttlMs : Math.min(ttlMs, RECORD_UNTIL_QUEUED_MS),
        state: 'queued',
        record: { account: principal.accountId, model: request.model, created: now },
      });
      recorded = true;
    }
    if (opts.beforeQueue) {
      await opts.beforeQueue(data);
      named = true;
    }
    const first = route.plan[0]?.provider ?? '';
    const lane = m.interactive ? deps.fastLanes?.available(first) : undefined;
    // A pool this process hosts runs the job here when it has a free slot (local-pools.ts).
    if (lane) {
      if (!(await deps.localPools?.run(first, data))) await lane.push(data);
    } else await deps.queues.add(data, undefined, opts.priority ? { priority: opts.priority } : {});
    if (recorded && !m.recovered && ttlMs > RECORD_UNTIL_QUEUED_MS)
      await deps.redis
        .pipeline()
        .pexpire(deps.keys.meta(id), ttlMs)
        .pexpire(deps.keys.frames(id), ttlMs)
        .exec();
  } catch (e) {
    stopFollowing();
    await deps.budget.release(reservation).catch(() => {});
    // Recorded but refused by a full Redis (nothing queued, the caller gets a 503): no job record
    // left `queued` for ever. DEL is what Redis still allows at maxmemory.
    if (recorded && isRedisFull(e))
      await deps.redis.del(deps.keys.frames(id), deps.keys.meta(id)).catch(() => {});
    // A retry (same Idempotency-Key) may already follow this job, which will never run.
    else if (named) await endUnqueued(deps.store, id, e);
    throw e;
  }
  if (!frames) return data;
  return { data, frames, close: stopFollowing };
}

/**
 * A job named to its request's Idempotency-Key record that could not be queued ends with the error
 * its request gets, so a retry already following it hears that rather than waiting out its deadline.
 * (The key itself is dropped as the request is refused: the next retry runs anew.) A job queued after
 * all (the queue answered late) finds itself ended when a worker picks it up, and makes no call.
 */
export async function endUnqueued(store: FrameStore, id: string, e: unknown): Promise<void> {
  const ge =
    e instanceof GatewayError
      ? e
      : new GatewayError({
          code: 'overloaded',
          message: 'The request could not be queued. Try again shortly.',
          retryable: true,
          retryAfterMs: 1_000,
        });
  await store
    .append(id, [{ type: 'error', status: ge.status, error: ge.toJSON() }], {
      owner: '',
      ttlMs: RECORD_UNTIL_QUEUED_MS,
      state: 'failed',
    })
    .catch(() => {});
}

/** How long an async job's record lives before its job is queued (then STREAM_TTL_SECONDS). */
const RECORD_UNTIL_QUEUED_MS = 20_000;

/** Asks whichever worker runs the job to stop; a job not yet started is ended when picked up. */
export async function cancelJob(deps: IngressDeps, jobId: string): Promise<void> {
  await requestCancel(deps.redis, deps.keys, jobId, deps.config.STREAM_TTL_SECONDS * 1000);
}

/** The job's record if it belongs to this account; otherwise it does not exist (no 403: ids stay unenumerable). */
export async function ownedJob(
  deps: IngressDeps,
  principal: Principal,
  jobId: string,
): Promise<JobMeta | undefined> {
  if (!/^req_[A-Za-z0-9_-]{10,64}$/.test(jobId)) return undefined;
  const meta = await readJobMeta(deps.redis, deps.keys, jobId);
  if (!meta?.account || meta.account !== principal.accountId) return undefined;
  return meta;
}
