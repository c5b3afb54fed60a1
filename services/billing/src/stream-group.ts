import { setTimeout as sleep } from 'node:timers/promises';
import { duplicate, type RedisClient } from '@faregate/queue/redis';
import type { Logger } from 'pino';
import {
  autoClaim,
  type Entry,
  ensureGroup,
  readGroup,
  readGroups,
  type StreamStatus,
  streamStatus,
} from './stream.ts';

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
  /**
   * Once caught up, a read of new entries that finds none waits up to this long (XREADGROUP BLOCK,
   * on a connection of its own) for the next one instead of reading again every `batchMs`: an idle
   * group costs one command per `idleBlockMs`, not one per `batchMs` (16-stream reads and the
   * credit stream's were 60 commands a second on an idle gateway). Busy, reads find entries and
   * never block, so batching is as before. 0 or unset: poll.
   */
  idleBlockMs?: number;
}

export interface StreamGroupHandler {
  /**
   * Handles one batch (entries of any of the group's streams); returns the entries to ack (the same
   * objects), or undefined to leave them all pending (stopping).
   */
  process(entries: Entry[]): Promise<Entry[] | undefined>;
  /** Each status refresh (lag gauges). */
  status?(s: StreamStatus): void;
}

/** Read state of one stream of a group. */
interface Part {
  key: string;
  /** Where to re-read this consumer's pending list from (after a restart); null once drained. */
  ownPending: string | null;
  claimCursor: string;
  nextClaimAt: number;
}

/**
 * The reading half of a billing consumer, shared by every stream billing reads (usage events,
 * credit commands): a consumer group read in batches (own pending entries first after a restart,
 * then idle ones of dead consumers, then new ones), XACK after the handler committed, backoff on
 * failures, lag status and trimming of acked entries. At-least-once: the handler must be idempotent.
 *
 * One group may read several streams (the usage stream is partitioned so each job's keys and its
 * usage stream share a Cluster slot): each read of new entries covers every stream in one command
 * (on a Redis Cluster, where that is cross-slot, one per stream: `readGroups`), and the batch
 * handed to the handler mixes them.
 */
export class StreamGroup {
  readonly keys: readonly string[];
  readonly group: string;
  readonly deadLetters: string;
  #redis: RedisClient;
  #log: Logger;
  #o: StreamGroupOptions;
  #h: StreamGroupHandler;
  #stop = new AbortController();
  #loop: Promise<void> | undefined;
  #status: NodeJS.Timeout | undefined;
  #parts: Part[];
  /** The stream of each entry in hand (entry ids are only unique within a stream). */
  #source = new WeakMap<Entry, string>();
  #lastFull = false;
  /** The last read of new entries found none: the next one may block (`idleBlockMs`). */
  #idle = false;
  /** Connection for blocking reads (never the command connection: XACKs must not wait behind them). */
  #blocking: RedisClient | undefined;
  #caughtUp = Promise.withResolvers<void>();
  /** Per stream, a trim point at which XTRIM last removed nothing. */
  #trimmedTo = new Map<string, string>();

  constructor(
    deps: { redis: RedisClient; log: Logger },
    stream: { keys: readonly string[]; group: string; deadLetters: string },
    opts: StreamGroupOptions,
    handler: StreamGroupHandler,
  ) {
    if (stream.keys.length === 0) throw new Error('a stream group reads at least one stream');
    this.#redis = deps.redis;
    this.#log = deps.log;
    this.keys = stream.keys;
    this.group = stream.group;
    this.deadLetters = stream.deadLetters;
    this.#o = opts;
    this.#h = handler;
    this.#parts = stream.keys.map((key) => ({ key, ownPending: '0', claimCursor: '0-0', nextClaimAt: 0 }));
  }

  get stopping(): boolean {
    return this.#stop.signal.aborted;
  }

  async start(): Promise<void> {
    await Promise.all(this.keys.map((key) => ensureGroup(this.#redis, key, this.group)));
    if ((this.#o.idleBlockMs ?? 0) > 0) this.#blocking = duplicate(this.#redis);
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
    // Ends a blocked read at once (what it would have delivered stays pending, re-read on restart).
    this.#blocking?.disconnect();
    await this.#loop;
  }

  /** Reports lag (summed over the streams) and trims acked entries off each stream (billing owns their retention). */
  async refreshStatus(): Promise<void> {
    try {
      const all = await Promise.all(
        this.keys.map(async (key) => {
          const s = await streamStatus(this.#redis, key, this.group);
          // Not again at a point where it already removed nothing (an idle partition's point stays put).
          if (s.trimBelow && this.#trimmedTo.get(key) !== s.trimBelow) {
            const removed = await this.#redis.call('XTRIM', [key, 'MINID', '~', s.trimBelow]);
            if (removed === 0) this.#trimmedTo.set(key, s.trimBelow);
          }
          return s;
        }),
      );
      this.#h.status?.(sumStatus(all));
    } catch (err) {
      this.#log.warn({ err, streams: this.keys.length }, 'stream status failed');
    }
  }

  /** Lag of the group over all its streams. */
  async status(): Promise<StreamStatus> {
    return sumStatus(await Promise.all(this.keys.map((key) => streamStatus(this.#redis, key, this.group))));
  }

  /** Exponential backoff with jitter, capped; returns early on stop. */
  async backoff(attempt: number): Promise<void> {
    const cap = Math.min(this.#o.backoffMaxMs, this.#o.backoffMinMs * 2 ** Math.min(attempt - 1, 20));
    const ms = cap / 2 + Math.random() * (cap / 2);
    await sleep(ms, undefined, { signal: this.#stop.signal }).catch(() => {});
  }

  /** Appends to the group's dead-letter stream: entries never to be retried, kept for a human. */
  async deadLetter(entry: Entry, fields: string[], reason: string): Promise<void> {
    const streamId = entry[0];
    const stream = this.#source.get(entry) ?? '';
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
        'stream',
        stream,
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
        this.#log.error({ err, group: this.group }, 'stream read failed; backing off');
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
    const base = { group: this.group, consumer: this.#o.consumer, count: this.#o.batchSize };
    const pendingParts = this.#parts.filter((p) => p.ownPending !== null);
    if (pendingParts.length > 0) {
      const own = await this.#each(pendingParts, async (p) => {
        const got = await readGroup(this.#redis, { ...base, key: p.key, id: p.ownPending ?? '0' });
        p.ownPending = got.at(-1)?.[0] ?? null;
        return got;
      });
      if (own.length > 0) return own;
    }
    const now = Date.now();
    const claimParts = this.#parts.filter((p) => now >= p.nextClaimAt);
    if (claimParts.length > 0) {
      const claimed = await this.#each(claimParts, async (p) => {
        const c = await autoClaim(this.#redis, {
          ...base,
          key: p.key,
          minIdleMs: this.#o.claimIdleMs,
          cursor: p.claimCursor,
        });
        p.claimCursor = c.next;
        if (c.next === '0-0') p.nextClaimAt = Date.now() + this.#o.claimEveryMs;
        return c.entries;
      });
      if (claimed.length > 0) {
        this.#log.info({ count: claimed.length, group: this.group }, 'reclaimed idle stream entries');
        return claimed;
      }
    }
    // Billing reads on its own rhythm rather than waking on every entry: an event lands at the very
    // moment the ingress is answering its caller, and settling then competes with it for the CPU.
    // A full batch means more is waiting: read again at once. At low load this also batches more.
    if (this.#o.batchMs > 0 && !this.#lastFull) await this.#pause(this.#o.batchMs);
    if (this.stopping) return [];
    // The batch size is shared out over the streams (at least one entry each), read in one command.
    const count = Math.max(1, Math.ceil(this.#o.batchSize / this.#parts.length));
    // Caught up and nothing came last time: wait for the next entry rather than poll. On a Redis
    // Cluster a read of several streams is one read per stream (readGroups), which cannot block
    // together: an idle group polls them every `idleBlockMs` instead.
    const perStream = this.#redis.isCluster && this.keys.length > 1;
    if (perStream && this.#idle) await this.#pause(this.#o.idleBlockMs ?? 0);
    if (this.stopping) return [];
    const blocking = this.#idle && !perStream ? this.#blocking : undefined;
    const byKey = await readGroups(blocking ?? this.#redis, {
      ...base,
      count,
      keys: this.keys,
      ...(blocking ? { blockMs: this.#o.idleBlockMs ?? 0 } : {}),
    });
    let full = false;
    const entries = await this.#each(this.#parts, async (p) => {
      const got = byKey.get(p.key) ?? [];
      if (got.length >= count) full = true;
      return got;
    });
    this.#lastFull = full;
    this.#idle = entries.length === 0;
    return entries;
  }

  /** Runs `read` on each part at once and concatenates the entries, remembering each one's stream. */
  async #each(parts: Part[], read: (p: Part) => Promise<Entry[]>): Promise<Entry[]> {
    const lists = await Promise.all(parts.map(read));
    const out: Entry[] = [];
    for (let i = 0; i < parts.length; i++) {
      const key = parts[i]?.key ?? '';
      for (const e of lists[i] ?? []) {
        this.#source.set(e, key);
        out.push(e);
      }
    }
    return out;
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

  /** XACK after commit, per stream. Retried while Redis is away; giving up only means a harmless redelivery. */
  async #ack(entries: Entry[]): Promise<void> {
    const byStream = new Map<string, string[]>();
    for (const e of entries) {
      const key = this.#source.get(e);
      if (key === undefined) continue;
      const ids = byStream.get(key);
      if (ids) ids.push(e[0]);
      else byStream.set(key, [e[0]]);
    }
    await Promise.all(
      [...byStream].map(async ([key, ids]) => {
        for (let attempt = 1; ; attempt++) {
          try {
            await this.#redis.xack(key, this.group, ...ids);
            return;
          } catch (err) {
            this.#log.warn(
              { err, attempt, stream: key },
              'XACK failed; retrying (the batch is already committed)',
            );
            if (this.stopping) return;
            await this.backoff(attempt);
          }
        }
      }),
    );
  }
}

/** The lag of several streams as one: counts summed, the oldest of the oldest; no single trim point. */
function sumStatus(all: StreamStatus[]): StreamStatus {
  let pending = 0;
  let backlog = 0;
  let oldestMs: number | null = null;
  for (const s of all) {
    pending += s.pending;
    backlog += s.backlog;
    if (s.oldestMs !== null && (oldestMs === null || s.oldestMs < oldestMs)) oldestMs = s.oldestMs;
  }
  return { pending, backlog, oldestMs, trimBelow: all.length === 1 ? (all[0]?.trimBelow ?? null) : null };
}
