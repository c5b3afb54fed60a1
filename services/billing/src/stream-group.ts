import { setTimeout as sleep } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { autoClaim, type Entry, ensureGroup, readGroup, type StreamStatus, streamStatus } from './stream.ts';

export interface StreamGroupOptions {
  /** Stable per replica (hostname), so a restarted process finds its own pending entries. */
  consumer: string;
  batchSize: number;
  /** Between reads when the last one was not full: bigger batches, a little more lag. */
  batchMs: number;
  /** Entries idle this long in another consumer's pending list are taken over. */
  claimIdleMs: number;
  claimEveryMs: number;
  backoffMinMs: number;
  backoffMaxMs: number;
  statusEveryMs: number;
}

export interface StreamGroupHandler {
  /** Handles one batch; returns the entry ids to ack, or undefined to leave them pending (stopping). */
  process(entries: Entry[]): Promise<string[] | undefined>;
  /** Each status refresh (lag gauges). */
  status?(s: StreamStatus): void;
}

/**
 * The reading half of a billing consumer, shared by every stream billing reads (usage events,
 * credit commands): a consumer group read in batches (own pending entries first after a restart,
 * then idle ones of dead consumers, then new ones), XACK after the handler committed, backoff on
 * failures, lag status and trimming of acked entries. At-least-once: the handler must be idempotent.
 */
export class StreamGroup {
  readonly key: string;
  readonly group: string;
  readonly deadLetters: string;
  #redis: Redis;
  #log: Logger;
  #o: StreamGroupOptions;
  #h: StreamGroupHandler;
  #stop = new AbortController();
  #loop: Promise<void> | undefined;
  #status: NodeJS.Timeout | undefined;
  #ownPending: string | null = '0';
  #claimCursor = '0-0';
  #nextClaimAt = 0;
  #lastFull = false;
  #caughtUp = Promise.withResolvers<void>();

  constructor(
    deps: { redis: Redis; log: Logger },
    stream: { key: string; group: string; deadLetters: string },
    opts: StreamGroupOptions,
    handler: StreamGroupHandler,
  ) {
    this.#redis = deps.redis;
    this.#log = deps.log;
    this.key = stream.key;
    this.group = stream.group;
    this.deadLetters = stream.deadLetters;
    this.#o = opts;
    this.#h = handler;
  }

  get stopping(): boolean {
    return this.#stop.signal.aborted;
  }

  async start(): Promise<void> {
    await ensureGroup(this.#redis, this.key, this.group);
    this.#loop = this.#run();
    this.#status = setInterval(() => void this.refreshStatus(), this.#o.statusEveryMs);
    this.#status.unref();
  }

  /** Resolves once a read found nothing left to do (everything queued before start is handled), or on stop. */
  caughtUp(): Promise<void> {
    return this.#caughtUp.promise;
  }

  /** Finishes the batch in hand, then returns. Unacked entries stay pending. */
  async stop(): Promise<void> {
    this.#stop.abort();
    this.#caughtUp.resolve();
    clearInterval(this.#status);
    await this.#loop;
  }

  /** Reports lag and trims acked entries off the stream (billing owns its streams' retention). */
  async refreshStatus(): Promise<void> {
    try {
      const s = await streamStatus(this.#redis, this.key, this.group);
      this.#h.status?.(s);
      if (s.trimBelow) await this.#redis.call('XTRIM', [this.key, 'MINID', '~', s.trimBelow]);
    } catch (err) {
      this.#log.warn({ err, stream: this.key }, 'stream status failed');
    }
  }

  /** Exponential backoff with jitter, capped; returns early on stop. */
  async backoff(attempt: number): Promise<void> {
    const cap = Math.min(this.#o.backoffMaxMs, this.#o.backoffMinMs * 2 ** Math.min(attempt - 1, 20));
    const ms = cap / 2 + Math.random() * (cap / 2);
    await sleep(ms, undefined, { signal: this.#stop.signal }).catch(() => {});
  }

  /** Appends to this stream's dead-letter stream: entries never to be retried, kept for a human. */
  async deadLetter(streamId: string, fields: string[], reason: string): Promise<void> {
    try {
      await this.#redis.xadd(
        this.deadLetters,
        'MAXLEN',
        '~',
        100_000,
        '*',
        ...fields,
        'source',
        streamId,
        'reason',
        reason.slice(0, 500),
      );
    } catch (err) {
      this.#log.error({ err, streamId }, 'could not write dead letter');
    }
  }

  async #run(): Promise<void> {
    let failures = 0;
    // The next batch is read while the current one is handled, so Redis and Postgres work overlap.
    // On stop a prefetched batch stays in our pending list and is re-read on restart: harmless.
    let ahead: Promise<Entry[]> | undefined;
    while (!this.stopping) {
      let entries: Entry[];
      try {
        entries = await (ahead ?? this.#next());
        failures = 0;
      } catch (err) {
        if (this.stopping) break;
        this.#log.error({ err, stream: this.key }, 'stream read failed; backing off');
        await this.backoff(++failures);
        continue;
      } finally {
        ahead = undefined;
      }
      if (entries.length === 0) {
        this.#caughtUp.resolve();
        continue;
      }
      if (!this.stopping) {
        ahead = this.#next();
        ahead.catch(() => {}); // surfaced when awaited above
      }
      const ack = await this.#h.process(entries);
      if (ack !== undefined) await this.#ack(ack);
    }
    await ahead?.catch(() => {});
  }

  /** Next batch: own pending entries first (after a restart), then stale ones of dead consumers, then new. */
  async #next(): Promise<Entry[]> {
    const base = { key: this.key, group: this.group, consumer: this.#o.consumer, count: this.#o.batchSize };
    if (this.#ownPending !== null) {
      const own = await readGroup(this.#redis, { ...base, id: this.#ownPending });
      const last = own.at(-1);
      this.#ownPending = last ? last[0] : null;
      if (own.length > 0) return own;
    }
    if (Date.now() >= this.#nextClaimAt) {
      const c = await autoClaim(this.#redis, {
        ...base,
        minIdleMs: this.#o.claimIdleMs,
        cursor: this.#claimCursor,
      });
      this.#claimCursor = c.next;
      if (c.next === '0-0') this.#nextClaimAt = Date.now() + this.#o.claimEveryMs;
      if (c.entries.length > 0) {
        this.#log.info({ count: c.entries.length, stream: this.key }, 'reclaimed idle stream entries');
        return c.entries;
      }
    }
    // Billing reads on its own rhythm rather than waking on every entry: an event lands at the very
    // moment the ingress is answering its caller, and settling then competes with it for the CPU.
    // A full batch means more is waiting: read again at once. At low load this also batches more.
    if (this.#o.batchMs > 0 && !this.#lastFull) await this.#pause(this.#o.batchMs);
    const entries = this.stopping ? [] : await readGroup(this.#redis, { ...base, id: '>' });
    this.#lastFull = entries.length >= this.#o.batchSize;
    return entries;
  }

  /** Waits `ms`, cut short by stop(). */
  #pause(ms: number): Promise<void> {
    const signal = this.#stop.signal;
    if (signal.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(t);
        signal.removeEventListener('abort', done);
        resolve();
      };
      const t = setTimeout(done, ms);
      signal.addEventListener('abort', done, { once: true });
    });
  }

  /** XACK after commit. Retried while Redis is away; giving up only means a harmless redelivery. */
  async #ack(ids: string[]): Promise<void> {
    if (ids.length === 0) return;
    for (let attempt = 1; ; attempt++) {
      try {
        await this.#redis.xack(this.key, this.group, ...ids);
        return;
      } catch (err) {
        this.#log.warn(
          { err, attempt, stream: this.key },
          'XACK failed; retrying (the batch is already committed)',
        );
        if (this.stopping) return;
        await this.backoff(attempt);
      }
    }
  }
}
