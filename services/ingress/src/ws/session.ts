import { ChatRequest } from '@faregate/contracts/chat';
import { GatewayError } from '@faregate/contracts/errors';
import { isTerminalRaw } from '@faregate/contracts/frames';
import type { ClientOp, ServerReplyBody } from '@faregate/contracts/ws';
import { followJob, type FollowHandle } from '@faregate/queue/follow';
import { seqOf } from '@faregate/queue/frame-store';
import { findJob, MAX_BATCH, notFoundBatch, ownedBatch } from '../batches.ts';
import type { IngressDeps } from '../deps.ts';
import { batchView, cancelBatch, ownedBatch as ownedOpenAIBatch } from '../openai-batches/batches.ts';
import { followProgress } from '../openai-batches/progress-follow.ts';
import { progressPosition, publishStatus } from '../openai-batches/progress.ts';
import { type Principal, requireScope } from '../plugins/auth.ts';
import { fromZod } from '../plugins/errors.ts';
import { cancelJob, submitChat } from '../submit.ts';

/** Direct job subscriptions one connection may hold (a batch counts once, whatever its size). */
export const MAX_SUBSCRIPTIONS = 256;

const jobNotFound = (id: string) =>
  new GatewayError({ code: 'not_found', message: `No job found with id '${id}'.`, param: 'job' });
const batchNotFound = (id: string) =>
  new GatewayError({ code: 'not_found', message: `No batch found with id '${id}'.`, param: 'batch' });

/** OpenAI batches (`/v1/batches`) have `batch_` ids; job batches (`/v1/jobs` with requests) `jbat_`. */
const isOpenAIBatch = (id: string) => id.startsWith('batch_');

/**
 * One WebSocket connection's subscriptions and operations. Every lookup is scoped to the
 * connection's account: another tenant's job or batch looks exactly like one that does not exist.
 */
export class StreamSession {
  readonly #deps: IngressDeps;
  #principal: Principal;
  readonly #reauth: () => Promise<Principal>;
  readonly #send: (raw: string) => void;
  readonly #reply: (o: ServerReplyBody) => void;
  readonly #isOpen: () => boolean;
  /** Job id → follower (direct subscriptions and batch members alike). */
  readonly #follows = new Map<string, { close(): void }>();
  /** Batch id → its member jobs still being followed. */
  readonly #batches = new Map<string, Set<string>>();
  /** OpenAI batch id → the follower of its progress. */
  readonly #progress = new Map<string, FollowHandle>();
  #direct = 0;

  constructor(
    deps: IngressDeps,
    principal: Principal,
    io: {
      send: (raw: string) => void;
      reply: (o: ServerReplyBody) => void;
      isOpen: () => boolean;
      /** The connection's tenant as of now (throws `invalid_api_key` once its key is revoked). */
      reauth: () => Promise<Principal>;
    },
  ) {
    this.#deps = deps;
    this.#principal = principal;
    this.#reauth = io.reauth;
    this.#send = io.send;
    this.#reply = io.reply;
    this.#isOpen = io.isOpen;
  }

  async handle(msg: ClientOp): Promise<void> {
    const tag: Record<string, string> = msg.id ? { id: msg.id } : {};
    if (msg.op === 'ping') return this.#reply({ type: 'pong', ...tag });
    this.#principal = await this.#reauth();
    // The key scope each op needs, as its HTTP route: a batch's ops `batches`, a job's `chat`.
    if (msg.op !== 'unsubscribe')
      requireScope(this.#principal, 'batch' in msg && msg.batch ? 'batches' : 'chat');
    switch (msg.op) {
      case 'subscribe': {
        if (!msg.job === !msg.batch)
          throw new GatewayError({
            code: 'invalid_request_error',
            message: "Give either 'job' or 'batch'.",
            param: 'job',
          });
        // Each kind of subscription has its cursor: a seq (a job, an OpenAI batch's progress), or
        // a seq per member (a job batch). Another is refused, not read as "from the start".
        const perMember = msg.batch !== undefined && !isOpenAIBatch(msg.batch);
        if (msg.after !== undefined && typeof msg.after !== (perMember ? 'object' : 'number')) {
          throw new GatewayError({
            code: 'invalid_request_error',
            message: perMember
              ? "A job batch's 'after' is an object of the last seq you have per member job: {\"<job id>\": seq}."
              : "'after' is the seq of the last frame you have (an integer), or 0.",
            param: 'after',
          });
        }
        if (msg.batch && isOpenAIBatch(msg.batch))
          return this.#subscribeProgress(msg.batch, typeof msg.after === 'number' ? msg.after : 0, tag);
        if (msg.batch)
          return this.#subscribeBatch(msg.batch, typeof msg.after === 'object' ? msg.after : {}, tag);
        const job = msg.job as string;
        const meta = await findJob(this.#deps, this.#principal, job);
        if (!meta) throw jobNotFound(job);
        if (this.#direct >= MAX_SUBSCRIPTIONS && !this.#follows.has(job)) {
          throw new GatewayError({
            code: 'rate_limit_exceeded',
            message: `At most ${MAX_SUBSCRIPTIONS} subscriptions per connection.`,
          });
        }
        // Counted from here, before the next await: subscribes sent together cannot all pass the cap.
        this.#direct++;
        let following = false;
        try {
          const after = typeof msg.after === 'number' ? msg.after : 0;
          const { lastSeq, ended } = await this.#position(job, after);
          // Frames are stored before anyone can see them: a cursor past the last is not one this
          // job gave, and following from it would wait for frames it will never deliver.
          if (!ended && after > lastSeq) {
            throw new GatewayError({
              code: 'invalid_request_error',
              message: `'after' (${after}) is past the job's last frame (${lastSeq}): give the seq of the last frame received, or 0.`,
              param: 'after',
            });
          }
          // The ack says where the job stands, so a client resuming at (or past) the end of a
          // finished job knows nothing more will come instead of waiting forever.
          this.#reply({
            type: 'ack',
            op: 'subscribe',
            job,
            after,
            last_seq: lastSeq,
            state: meta.state ?? 'queued',
            ...(ended ? { ended: true } : {}),
            ...tag,
          });
          if (!ended) {
            following = true;
            await this.#follow(job, after, () => this.#direct--);
          }
        } finally {
          if (!following) this.#direct--;
        }
        return;
      }
      case 'unsubscribe': {
        if (msg.batch && isOpenAIBatch(msg.batch)) this.#progress.get(msg.batch)?.close();
        else if (msg.batch) {
          for (const j of this.#batches.get(msg.batch) ?? []) this.#follows.get(j)?.close();
          this.#batches.delete(msg.batch);
        } else if (msg.job) this.#follows.get(msg.job)?.close();
        return this.#reply({
          type: 'ack',
          op: 'unsubscribe',
          ...(msg.job ? { job: msg.job } : { batch: msg.batch }),
          ...tag,
        });
      }
      case 'cancel': {
        if (msg.batch && isOpenAIBatch(msg.batch)) {
          const b = await ownedOpenAIBatch(this.#deps, this.#principal.accountId, msg.batch);
          if (!b) throw batchNotFound(msg.batch);
          await publishStatus(this.#deps, await cancelBatch(this.#deps, b));
          return this.#reply({ type: 'ack', op: 'cancel', batch: msg.batch, ...tag });
        }
        if (msg.batch) {
          const b = await ownedBatch(this.#deps, this.#principal, msg.batch);
          if (!b) throw notFoundBatch(msg.batch);
          // The batch engine's cancel, as POST /v1/jobs/batches/{id}/cancel: no more members start,
          // those whose call is under way finish, those never started end cancelled.
          await cancelBatch(this.#deps, b.row);
          return this.#reply({ type: 'ack', op: 'cancel', batch: msg.batch, ...tag });
        }
        const job = msg.job ?? '';
        if (!(await findJob(this.#deps, this.#principal, job))) throw jobNotFound(job);
        await cancelJob(this.#deps, job);
        return this.#reply({ type: 'ack', op: 'cancel', job, ...tag });
      }
      case 'submit': {
        const r = ChatRequest.safeParse(msg.request);
        if (!r.success) throw fromZod(r.error, 'request');
        const { id } = await submitChat(this.#deps, this.#principal, r.data, 'ws');
        this.#reply({ type: 'ack', op: 'submit', job: id, ...tag });
        this.#direct++;
        // The follower subscribes, then reads the stream from seq 0: it delivers every frame,
        // including those the job wrote before the follower started.
        void this.#follow(id, 0, () => this.#direct--).catch((e: unknown) => {
          const ge =
            e instanceof GatewayError
              ? e
              : new GatewayError({ code: 'internal_error', message: 'could not follow the job' });
          this.#reply({ type: 'nack', op: 'subscribe', job: id, ...tag, error: ge.toBody().error });
        });
        return;
      }
    }
  }

  /** Where a job's stream stands relative to a cursor. */
  async #position(job: string, after: number): Promise<{ lastSeq: number; ended: boolean }> {
    const last = await this.#deps.store.last(job);
    const lastSeq = last ? seqOf(last) : 0;
    return { lastSeq, ended: last !== undefined && isTerminalRaw(last) && after >= lastSeq };
  }

  /**
   * Follows a job for this connection, in place of any follower it had. The follower is registered
   * before the first await, so a second subscribe, an unsubscribe or the connection's close made
   * while it is still starting closes it: never a follower nobody can close, delivering every frame
   * once more. `onEnd` runs exactly once: when the follower ends, is closed, or fails to start.
   */
  async #follow(job: string, after: number, onEnd: () => void): Promise<void> {
    this.#follows.get(job)?.close();
    let started: FollowHandle | undefined;
    let closed = false;
    let finished = false;
    const finish = () => {
      if (finished) return;
      finished = true;
      if (this.#follows.get(job) === slot) this.#follows.delete(job);
      onEnd();
    };
    const slot = {
      close: () => {
        closed = true;
        if (started) started.close();
        else finish();
      },
    };
    this.#follows.set(job, slot);
    try {
      started = await followJob(this.#deps.hub, this.#deps.store, job, after, (raw) => {
        if (!closed) this.#send(raw);
      });
    } catch (e) {
      finish();
      throw e;
    }
    if (closed || !this.#isOpen()) {
      started.close();
      finish();
      return;
    }
    void started.ended.then(finish);
  }

  /**
   * Every member job of a batch, each from its own cursor, frames tagged with their job id as
   * always; `batch_end` once every member has delivered its terminal frame.
   */
  async #subscribeBatch(
    batch: string,
    after: Record<string, number>,
    tag: Record<string, string>,
  ): Promise<void> {
    const b = await ownedBatch(this.#deps, this.#principal, batch);
    if (!b) throw notFoundBatch(batch);
    const members = b.jobs.filter(Boolean).slice(0, MAX_BATCH);
    const pending = new Set<string>();
    const positions = await Promise.all(members.map((j) => this.#position(j, after[j] ?? 0)));
    members.forEach((j, i) => {
      if (!positions[i]?.ended) pending.add(j);
    });
    this.#reply({ type: 'ack', op: 'subscribe', batch, jobs: b.jobs, pending: pending.size, ...tag });
    for (const j of this.#batches.get(batch) ?? []) this.#follows.get(j)?.close();
    this.#batches.set(batch, pending);
    const done = (j: string) => {
      if (!pending.delete(j)) return;
      if (pending.size === 0 && this.#batches.get(batch) === pending) {
        this.#batches.delete(batch);
        this.#reply({ type: 'batch_end', batch });
      }
    };
    if (pending.size === 0) {
      this.#batches.delete(batch);
      return this.#reply({ type: 'batch_end', batch });
    }
    await Promise.all([...pending].map((j) => this.#follow(j, after[j] ?? 0, () => done(j))));
  }

  /**
   * An OpenAI batch's progress from the cursor (`after`: the last progress seq the client has). The
   * ack says where the batch stands (status and counts from its record, the stream's positions),
   * and `ended: true` when it is over and the client has every event.
   */
  async #subscribeProgress(batch: string, after: number, tag: Record<string, string>): Promise<void> {
    const b = await ownedOpenAIBatch(this.#deps, this.#principal.accountId, batch);
    if (!b) throw batchNotFound(batch);
    if (this.#direct >= MAX_SUBSCRIPTIONS && !this.#progress.has(batch)) {
      throw new GatewayError({
        code: 'rate_limit_exceeded',
        message: `At most ${MAX_SUBSCRIPTIONS} subscriptions per connection.`,
      });
    }
    // The record may be ahead of the stream (a driver killed before it reported): report it first.
    await publishStatus(this.#deps, b);
    const { lastSeq, firstSeq, final } = await progressPosition(this.#deps, batch);
    const ended = final && after >= lastSeq;
    const view = batchView(b);
    this.#reply({
      type: 'ack',
      op: 'subscribe',
      batch,
      after,
      last_seq: lastSeq,
      first_seq: firstSeq,
      status: view.status,
      request_counts: view.request_counts,
      ...(after < firstSeq - 1 && firstSeq <= lastSeq ? { truncated: true } : {}),
      ...(ended ? { ended: true } : {}),
      ...tag,
    });
    this.#progress.get(batch)?.close();
    if (ended) return;
    this.#direct++;
    const h = await followProgress(this.#deps, batch, after, (raw) => this.#send(raw));
    if (!this.#isOpen()) {
      h.close();
      this.#direct--;
      return;
    }
    this.#progress.set(batch, h);
    void h.ended.then(() => {
      if (this.#progress.get(batch) === h) this.#progress.delete(batch);
      this.#direct--;
    });
  }

  close(): void {
    for (const h of this.#progress.values()) h.close();
    this.#progress.clear();
    for (const h of this.#follows.values()) h.close();
    this.#follows.clear();
    this.#batches.clear();
  }
}
