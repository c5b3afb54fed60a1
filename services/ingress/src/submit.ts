import { ChatRequest } from '@faregate/contracts/chat';
import { GatewayError } from '@faregate/contracts/errors';
import type { JobMeta } from '@faregate/contracts/job-control';
import type { JobData } from '@faregate/contracts/jobs';
import { newId } from '@faregate/contracts/ids';
import { readJobMeta, requestCancel } from '@faregate/queue/job-control';
import type { IngressDeps } from './deps.ts';
import type { Principal } from './plugins/auth.ts';
import { requireScope } from './plugins/auth.ts';
import { fromZod } from './plugins/errors.ts';

/** Validates a chat body, with OpenAI-style messages for the common mistakes. */
export function parseChatRequest(body: unknown): ChatRequest {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw new GatewayError({
      code: 'invalid_request_error',
      message: 'The request body must be a JSON object.',
    });
  }
  const b = body as Record<string, unknown>;
  if (b.model === undefined) {
    throw new GatewayError({
      code: 'invalid_request_error',
      message: "Missing required parameter: 'model'.",
      param: 'model',
    });
  }
  if (b.messages === undefined) {
    throw new GatewayError({
      code: 'invalid_request_error',
      message: "Missing required parameter: 'messages'.",
      param: 'messages',
    });
  }
  const r = ChatRequest.safeParse(body);
  if (!r.success) throw fromZod(r.error);
  return r.data;
}

export interface SubmitOptions {
  /** Emit delta frames and keep the long replay window (streaming callers and async jobs). */
  deltas: boolean;
  /** Record an `accepted` frame first (async jobs and WS submits: subscribers see it). */
  accepted: boolean;
  /** Runs alongside admission, before the job is queued (subscribe to its frames here). */
  prepare?: (id: string) => Promise<void>;
  /** Admission failed after `prepare` ran: undo what it set up. */
  onRefused?: () => void;
  /** Frames also go to this process's reply channel (the caller waits here, over HTTP). */
  reply?: boolean;
  /**
   * Someone waits on this request now (an HTTP caller, a WS submit): it may take its pool's fast
   * lane. Async jobs and batches always queue on BullMQ.
   */
  interactive?: boolean;
  /** Runs once the request is admitted, right before it is queued. */
  beforeEnqueue?: (id: string) => Promise<void>;
}

/**
 * Admission and enqueue: model routing, model permission, the budget hold, the job record, and
 * exactly one BullMQ job. Nothing is queued unless every check passed.
 */
export async function submitChat(
  deps: IngressDeps,
  principal: Principal,
  request: ChatRequest,
  opts: SubmitOptions,
): Promise<JobData> {
  requireScope(principal, 'chat');
  const route = deps.router.plan(request);
  if (principal.allowedModels) {
    const allowed = principal.allowedModels;
    const ok = route.plan.filter(
      (c) =>
        allowed.includes(`${c.provider}/${c.model}`) ||
        allowed.includes(c.model) ||
        allowed.includes(request.model),
    );
    if (ok.length === 0) {
      throw new GatewayError({
        code: 'permission_denied',
        message: `This API key is not allowed to use the model \`${request.model}\`.`,
        param: 'model',
      });
    }
    route.plan = ok;
  }
  // The hold covers every call that may produce tokens (a retry or fallback hop bills again): the
  // worker refuses a call past `holdCalls`, so settlement never exceeds the hold.
  const holdCalls = deps.config.HOLD_CALLS;
  const holdMicros = route.callMicros * BigInt(holdCalls);
  const id = newId('req');
  const now = Date.now();
  const deadline = now + deps.config.REQUEST_TIMEOUT_MS;
  const data: JobData = {
    v: 1,
    id,
    account: principal.accountId,
    key: principal.keyId,
    request,
    requestedModel: request.model,
    plan: route.plan,
    hop: 0,
    deltas: opts.deltas,
    created: now,
    deadline,
    ...(opts.reply && deps.hub.replyChannel ? { replyTo: deps.hub.replyChannel } : {}),
    holdCalls,
    attempts: [],
  };
  const ttlMs = (opts.deltas ? deps.config.STREAM_TTL_SECONDS : deps.config.SYNC_TTL_SECONDS) * 1000;
  // Admission (budget) and the caller's subscription are independent: run them together. Nothing is
  // recorded or queued unless both succeeded.
  const [hold, prepared] = await Promise.allSettled([
    deps.budget.admit({
      requestId: id,
      accountId: principal.accountId,
      keyId: principal.keyId,
      micros: holdMicros,
      deadline,
    }),
    (async () => opts.prepare?.(id))(),
  ]);
  if (hold.status === 'rejected') {
    opts.onRefused?.();
    throw hold.reason;
  }
  if (!hold.value.ok) {
    opts.onRefused?.();
    throw new GatewayError({
      code: 'insufficient_quota',
      message:
        hold.value.reason === 'key_limit'
          ? "This request would exceed this API key's spend limit."
          : 'Your balance does not cover the maximum cost of this request. Add credit or lower max_tokens.',
    });
  }
  const reservation = hold.value.reservation;
  if (reservation.leased) data.hold = reservation.hold;
  try {
    if (prepared.status === 'rejected') throw prepared.reason;
    if (opts.accepted) {
      const created = Math.floor(now / 1000);
      // Async jobs are looked up (GET, subscribe) right after the 202: the record goes with the
      // first frame. A request answered over HTTP is recorded by its first attempt instead.
      await deps.store.append(id, [{ type: 'accepted', model: request.model, created }], {
        owner: '',
        ttlMs,
        state: 'queued',
        record: { account: principal.accountId, model: request.model, created: now },
      });
    }
    await opts.beforeEnqueue?.(id);
    const lane = opts.interactive ? deps.fastLanes?.available(route.plan[0]?.provider ?? '') : undefined;
    if (lane) await lane.push(data);
    else await deps.queues.add(data);
  } catch (e) {
    opts.onRefused?.();
    await deps.budget.release(reservation).catch(() => {});
    throw e;
  }
  return data;
}

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
