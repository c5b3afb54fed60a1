import { ChatRequest } from '@faregate/contracts/chat';
import { GatewayError } from '@faregate/contracts/errors';
import { isTerminalRaw } from '@faregate/contracts/frames';
import type { ClientOp, ServerReplyBody } from '@faregate/contracts/ws';
import { followJob, type FollowHandle } from '@faregate/queue/follow';
import { seqOf } from '@faregate/queue/frame-store';
import { findJob, MAX_BATCH, ownedBatch } from '../batches.ts';
import type { IngressDeps } from '../deps.ts';
import { batchView, cancelBatch, ownedBatch as ownedOpenAIBatch } from '../openai-batches/batches.ts';
import { followProgress } from '../openai-batches/progress-follow.ts';
import { progressPosition, publishStatus } from '../openai-batches/progress.ts';
import { type Principal, requireScope } from '../plugins/auth.ts';
import { fromZod } from '../plugins/errors.ts';
import { cancelJob, submitChat } from '../submit.ts';
import { asGatewayError, nackError } from '../plugins/errors.ts';

/**
 * Followers one connection may hold: each job subscription (a `submit` included), each member job a
 * job batch subscription follows, each batch-progress subscription. A job followed both directly
 * and as a batch member is one follower.
 */
export const MAX_SUBSCRIPTIONS = 256;

const tooMany = () =>
  new GatewayError({
    code: 'rate_limit_exceeded',
    message: `At most ${MAX_SUBSCRIPTIONS} subscriptions per connection (a job batch counts each member job it follows): unsubscribe from some, or open another connection.`,
  });

const pastLastFrame = (after: number, lastSeq: number, member?: string) =>
  new GatewayError({
    code: 'invalid_request_error',
    message: `'after'${member ? ` of job '${member}'` : ''} (${after}) is past the job's last frame (${lastSeq}): give the seq of the last frame received, or 0.`,
    param: 'after',
  });
const jobNotFound = (id: string) =>
  new GatewayError({ code: 'not_found', message: `No job found with id '${id}'.`, param: 'job' });
const batchNotFound = (id: string) =>
  new GatewayError({ code: 'not_found', message: `No batch found with id '${id}'.`, param: 'batch' });
/** A job batch the connection cannot see: named by the field the client gave it in, as for a `batch_`. */
const jobBatchNotFound = (id: string) =>
  new GatewayError({ code: 'not_found', message: `No job batch found with id '${id}'.`, param: 'batch' });

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
  /** Job batch id → its member jobs whose terminal frame this connection has not delivered yet. */
  readonly #batches = new Map<string, Set<string>>();
  /** OpenAI batch id → the follower of its progress. */
  readonly #progress = new Map<string, FollowHandle>();
  /** Followers an operation under way has counted but not registered yet. */
  #reserved = 0;

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
        eitherJobOrBatch(msg);
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
        // Counted before the first await: subscribes sent together cannot all pass the cap.
        const release = this.#reserve(this.#follows.has(job) ? 0 : 1);
        try {
          const meta = await findJob(this.#deps, this.#principal, job);
          if (!meta) throw jobNotFound(job);
          const after = typeof msg.after === 'number' ? msg.after : 0;
          const { lastSeq, ended } = await this.#position(job, after);
          // Frames are stored before anyone can see them: a cursor past the last is not one this
          // job gave, and following from it would wait for frames it will never deliver.
          if (!ended && after > lastSeq) throw pastLastFrame(after, lastSeq);
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
          if (!ended) await this.#follow(job, after);
        } finally {
          release();
        }
        return;
      }
      case 'unsubscribe': {
        eitherJobOrBatch(msg);
        if (msg.batch && isOpenAIBatch(msg.batch)) this.#progress.get(msg.batch)?.close();
        else if (msg.batch) {
          for (const j of this.#batches.get(msg.batch) ?? []) this.#follows.get(j)?.close();
          this.#batches.delete(msg.batch);
        } else if (msg.job) this.#follows.get(msg.job)?.close(); // a batch it belongs to still waits for it
        return this.#reply({
          type: 'ack',
          op: 'unsubscribe',
          ...(msg.job ? { job: msg.job } : { batch: msg.batch }),
          ...tag,
        });
      }
      case 'cancel': {
        eitherJobOrBatch(msg);
        if (msg.batch && isOpenAIBatch(msg.batch)) {
          const b = await ownedOpenAIBatch(this.#deps, this.#principal.accountId, msg.batch);
          if (!b) throw batchNotFound(msg.batch);
          await publishStatus(this.#deps, await cancelBatch(this.#deps, b));
          return this.#reply({ type: 'ack', op: 'cancel', batch: msg.batch, ...tag });
        }
        if (msg.batch) {
          const b = await ownedBatch(this.#deps, this.#principal, msg.batch);
          if (!b) throw jobBatchNotFound(msg.batch);
          // The batch engine's cancel, as POST /v1/jobs/batches/{id}/cancel: no more members start,
          // those whose call is under way finish, those never started end cancelled.
          await cancelBatch(this.#deps, b.row);
          return this.#reply({ type: 'ack', op: 'cancel', batch: msg.batch, ...tag });
        }
        const job = msg.job as string;
        if (!(await findJob(this.#deps, this.#principal, job))) throw jobNotFound(job);
        await cancelJob(this.#deps, job);
        return this.#reply({ type: 'ack', op: 'cancel', job, ...tag });
      }
      case 'submit': {
        // The job is followed from its creation: refused before it is created when no follower is left.
        const release = this.#reserve(1);
        try {
          const r = ChatRequest.safeParse(msg.request);
          if (!r.success) throw fromZod(r.error, 'request');
          const { id } = await submitChat(this.#deps, this.#principal, r.data, 'ws');
          this.#reply({ type: 'ack', op: 'submit', job: id, ...tag });
          // The follower subscribes, then reads the stream from seq 0: it delivers every frame,
          // including those the job wrote before the follower started. It is registered at once
          // (before this returns), so the next op of the socket finds it.
          void this.#follow(id, 0).catch((e: unknown) => {
            const ge = asGatewayError(e, 'could not follow the job');
            this.#reply({ type: 'nack', op: 'subscribe', job: id, ...tag, error: nackError(ge) });
          });
        } finally {
          release();
        }
        return;
      }
    }
  }

  /** Followers held or counted by an operation under way. */
  get subscriptions(): number {
    return this.#follows.size + this.#progress.size + this.#reserved;
  }

  /**
   * Counts `n` more followers, refusing past the cap; returns how to give the count back (once the
   * followers are registered, or the operation failed). Called before an operation's first await.
   */
  #reserve(n: number): () => void {
    if (n > 0 && this.subscriptions + n > MAX_SUBSCRIPTIONS) throw tooMany();
    this.#reserved += n;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#reserved -= n;
    };
  }

  /** A job's terminal frame was delivered: each job batch waiting for it may be over. */
  #delivered(job: string): void {
    for (const [batch, pending] of this.#batches) {
      if (!pending.delete(job) || pending.size > 0) continue;
      this.#batches.delete(batch);
      this.#reply({ type: 'batch_end', batch });
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
   * once more. Only the delivery of the job's terminal frame counts as its end for a job batch
   * (`#delivered`): a follower closed by an unsubscribe or replaced by a new subscribe does not.
   */
  async #follow(job: string, after: number): Promise<void> {
    this.#follows.get(job)?.close();
    let started: FollowHandle | undefined;
    let closed = false;
    const finish = () => {
      if (this.#follows.get(job) === slot) this.#follows.delete(job);
    };
    const slot = {
      close: () => {
        closed = true;
        finish();
        started?.close();
      },
    };
    this.#follows.set(job, slot);
    try {
      started = await followJob(this.#deps.hub, this.#deps.store, job, after, (raw) => {
        if (closed) return;
        this.#send(raw);
        if (isTerminalRaw(raw)) this.#delivered(job);
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
   * always; `batch_end` once every member has delivered its terminal frame on this connection.
   * Each member still to deliver is a follower, counted against the cap.
   */
  async #subscribeBatch(
    batch: string,
    after: Record<string, number>,
    tag: Record<string, string>,
  ): Promise<void> {
    const b = await ownedBatch(this.#deps, this.#principal, batch);
    if (!b) throw jobBatchNotFound(batch);
    const members = b.jobs.filter(Boolean).slice(0, MAX_BATCH);
    const positions = await Promise.all(members.map((j) => this.#position(j, after[j] ?? 0)));
    const pending = new Set<string>();
    members.forEach((j, i) => {
      const at = after[j] ?? 0;
      const p = positions[i] ?? { lastSeq: 0, ended: false };
      // As for a job: a cursor past a running member's last frame would wait for frames it never gets.
      if (!p.ended && at > p.lastSeq) throw pastLastFrame(at, p.lastSeq, j);
      if (!p.ended) pending.add(j);
    });
    // No await from here until every follower is registered: the count cannot be raced.
    const old = this.#batches.get(batch) ?? new Set<string>();
    const added = [...pending].filter((j) => !this.#follows.has(j)).length;
    const freed = [...old].filter((j) => this.#follows.has(j) && !pending.has(j)).length;
    if (added - freed > 0) this.#reserve(added - freed)();
    this.#reply({ type: 'ack', op: 'subscribe', batch, jobs: b.jobs, pending: pending.size, ...tag });
    for (const j of old) this.#follows.get(j)?.close();
    if (pending.size === 0) {
      this.#batches.delete(batch);
      return this.#reply({ type: 'batch_end', batch });
    }
    this.#batches.set(batch, pending);
    await Promise.all([...pending].map((j) => this.#follow(j, after[j] ?? 0)));
  }

  /**
   * An OpenAI batch's progress from the cursor (`after`: the last progress seq the client has). The
   * ack says where the batch stands (status and counts from its record, the stream's positions),
   * and `ended: true` when it is over and the client has every event.
   */
  async #subscribeProgress(batch: string, after: number, tag: Record<string, string>): Promise<void> {
    // Counted before the first await, as a job subscription: subscribes sent together cannot all pass.
    const release = this.#reserve(this.#progress.has(batch) ? 0 : 1);
    try {
      const b = await ownedOpenAIBatch(this.#deps, this.#principal.accountId, batch);
      if (!b) throw batchNotFound(batch);
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
      const previous = this.#progress.get(batch);
      if (previous) {
        this.#progress.delete(batch);
        previous.close();
      }
      if (ended) return;
      const h = await followProgress(this.#deps, batch, after, (raw) => this.#send(raw));
      if (!this.#isOpen()) {
        h.close();
        return;
      }
      this.#progress.set(batch, h);
      void h.ended.then(() => {
        if (this.#progress.get(batch) === h) this.#progress.delete(batch);
      });
    } finally {
      release();
    }
  }

  close(): void {
    for (const h of this.#progress.values()) h.close();
    this.#progress.clear();
    for (const h of this.#follows.values()) h.close();
    this.#follows.clear();
    this.#batches.clear();
  }
}

/** An op on a job or a batch names exactly one of them (`subscribe`, `unsubscribe`, `cancel`). */
function eitherJobOrBatch(msg: { job?: string | undefined; batch?: string | undefined }): void {
  if (!msg.job === !msg.batch)
    throw new GatewayError({
      code: 'invalid_request_error',
      message: "Give either 'job' or 'batch'.",
      param: 'job',
    });
}
