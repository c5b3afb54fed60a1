import { setTimeout as sleep } from 'node:timers/promises';
import type { UsageEvent } from '@faregate/contracts/usage';
import type { Db } from '@faregate/db/client';
import type { Keys } from '@faregate/queue/keys';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { isTransientDbError } from './errors.ts';
import { parseEntry } from './event.ts';
import { type PricedEvent, settleBatch } from './ledger.ts';
import type { BillingMetrics } from './metrics.ts';
import type { PriceBook } from './price-book.ts';
import { priceEvents } from './pricing.ts';
import { autoClaim, type Entry, ensureGroup, readGroup, streamStatus } from './stream.ts';

export interface ConsumerDeps {
  /** Commands (XACK, XAUTOCLAIM, status). */
  redis: Redis;
  db: Db;
  keys: Keys;
  book: PriceBook;
  metrics: BillingMetrics;
  log: Logger;
}

export interface ConsumerOptions {
  /** Stable per replica (hostname), so a restarted process finds its own pending entries. */
  consumer: string;
  batchSize: number;
  /** Once a first event arrives, keep collecting for up to this long (bigger batches, more lag). */
  batchMs: number;
  /** Entries idle this long in another consumer's pending list are taken over. */
  claimIdleMs: number;
  claimEveryMs: number;
  backoffMinMs: number;
  backoffMaxMs: number;
  statusEveryMs: number;
}

export const defaultConsumerOptions: Omit<ConsumerOptions, 'consumer'> = {
  batchSize: 500,
  batchMs: 50,
  claimIdleMs: 30_000,
  claimEveryMs: 5_000,
  backoffMinMs: 100,
  backoffMaxMs: 10_000,
  statusEveryMs: 2_000,
};

interface Valid {
  id: string;
  event: UsageEvent;
}

/**
 * Settles usage events from the Redis Stream into the ledger. At-least-once delivery (consumer
 * group, reclaim after a crash) + an idempotent ledger (unique event id) = each event settled
 * exactly once. Order per batch: settle in one Postgres transaction, then XACK; a crash in
 * between redelivers the batch, and the second settlement is a no-op.
 */
export class UsageConsumer {
  #d: ConsumerDeps;
  #o: ConsumerOptions;
  #stop = new AbortController();
  #loop: Promise<void> | undefined;
  #status: NodeJS.Timeout | undefined;
  #ownPending: string | null = '0';
  #claimCursor = '0-0';
  #nextClaimAt = 0;

  constructor(deps: ConsumerDeps, opts: Partial<ConsumerOptions> & { consumer: string }) {
    this.#d = deps;
    this.#o = { ...defaultConsumerOptions, ...opts };
  }

  get stopping(): boolean {
    return this.#stop.signal.aborted;
  }

  async start(): Promise<void> {
    await ensureGroup(this.#d.redis, this.#d.keys.usage, this.#d.keys.usageGroup);
    this.#loop = this.#run();
    this.#status = setInterval(() => void this.refreshStatus(), this.#o.statusEveryMs);
    this.#status.unref();
  }

  /** Finishes the batch in hand (if Postgres is reachable), then returns. Unacked entries stay pending. */
  async stop(): Promise<void> {
    this.#stop.abort();
    clearInterval(this.#status);
    await this.#loop;
  }

  /** Updates lag gauges and trims settled entries off the stream (billing owns its retention). */
  async refreshStatus(): Promise<void> {
    const { redis, keys, metrics, log } = this.#d;
    try {
      const s = await streamStatus(redis, keys.usage, keys.usageGroup);
      metrics.pending.set(s.pending);
      metrics.backlog.set(s.backlog);
      metrics.oldestAgeSeconds.set(s.oldestMs === null ? 0 : Math.max(0, (Date.now() - s.oldestMs) / 1000));
      if (s.trimBelow) await redis.call('XTRIM', [keys.usage, 'MINID', '~', s.trimBelow]);
    } catch (err) {
      log.warn({ err }, 'usage stream status failed');
    }
  }

  async #run(): Promise<void> {
    let failures = 0;
    // The next batch is read while the current one settles, so Redis and Postgres work overlap.
    // On stop a prefetched batch stays in our pending list and is re-read on restart: harmless.
    let ahead: Promise<Entry[]> | undefined;
    while (!this.stopping) {
      let entries: Entry[];
      try {
        entries = await (ahead ?? this.#next());
        failures = 0;
      } catch (err) {
        if (this.stopping) break;
        this.#d.log.error({ err }, 'usage stream read failed; backing off');
        await this.#backoff(++failures);
        continue;
      } finally {
        ahead = undefined;
      }
      if (entries.length === 0) continue;
      if (!this.stopping) {
        ahead = this.#next();
        ahead.catch(() => {}); // surfaced when awaited above
      }
      await this.#process(entries);
    }
    await ahead?.catch(() => {});
  }

  /** Next batch: own pending entries first (after a restart), then stale ones of dead consumers, then new. */
  async #next(): Promise<Entry[]> {
    const { keys } = this.#d;
    const base = {
      key: keys.usage,
      group: keys.usageGroup,
      consumer: this.#o.consumer,
      count: this.#o.batchSize,
    };
    if (this.#ownPending !== null) {
      const own = await readGroup(this.#d.redis, { ...base, id: this.#ownPending });
      const last = own.at(-1);
      this.#ownPending = last ? last[0] : null;
      if (own.length > 0) return own;
    }
    if (Date.now() >= this.#nextClaimAt) {
      const c = await autoClaim(this.#d.redis, {
        ...base,
        minIdleMs: this.#o.claimIdleMs,
        cursor: this.#claimCursor,
      });
      this.#claimCursor = c.next;
      if (c.next === '0-0') this.#nextClaimAt = Date.now() + this.#o.claimEveryMs;
      if (c.entries.length > 0) {
        this.#d.log.info({ count: c.entries.length }, 'reclaimed idle usage events');
        return c.entries;
      }
    }
    // Billing reads on its own rhythm rather than waking on every event: an event lands at the very
    // moment the ingress is answering its caller, and settling then competes with it for the CPU.
    // A full batch means more is waiting: read again at once. At low load this also batches more.
    if (this.#o.batchMs > 0 && !this.#lastFull) await this.#pause(this.#o.batchMs);
    const entries = this.stopping ? [] : await readGroup(this.#d.redis, { ...base, id: '>' });
    this.#lastFull = entries.length >= this.#o.batchSize;
    return entries;
  }

  #lastFull = false;

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

  async #process(entries: Entry[]): Promise<void> {
    const { metrics, log } = this.#d;
    const valid: Valid[] = [];
    const ackNow: string[] = [];
    for (const [id, fields] of entries) {
      const p = parseEntry(fields);
      if (p.ok) valid.push({ id, event: p.event });
      else {
        metrics.malformed.inc();
        log.warn({ streamId: id, reason: p.reason }, 'malformed usage event; acked without settling');
        if (fields) await this.#deadLetter(id, fields, `malformed: ${p.reason}`);
        ackNow.push(id);
      }
    }
    const settledIds = await this.#settle(valid);
    if (settledIds === undefined) return; // stopping while Postgres is away: leave them pending
    await this.#ack([...ackNow, ...settledIds]);
  }

  /** Settles with retry; returns the stream ids to ack, or undefined when stopped before success. */
  async #settle(valid: Valid[]): Promise<string[] | undefined> {
    if (valid.length === 0) return [];
    const { metrics, log, db, book } = this.#d;
    for (let attempt = 1; ; attempt++) {
      try {
        const priced = await priceEvents(
          book,
          valid.map((v) => v.event),
        );
        const end = metrics.batchSeconds.startTimer();
        const r = await settleBatch(db, priced);
        end();
        this.#count(r.inserted, r.duplicates);
        return valid.map((v) => v.id);
      } catch (err) {
        if (!isTransientDbError(err)) {
          metrics.batchErrors.inc({ kind: 'batch_rejected' });
          log.error({ err }, 'settlement batch rejected; settling events one by one');
          return this.#settleOneByOne(valid);
        }
        metrics.batchErrors.inc({ kind: 'transient' });
        log.warn({ err, attempt }, 'settlement failed (Postgres unavailable?); will retry, nothing acked');
        if (this.stopping) return undefined;
        await this.#backoff(attempt);
        if (this.stopping) return undefined;
      }
    }
  }

  /** Isolates a poison event: each event in its own transaction; one Postgres refuses is dead-lettered. */
  async #settleOneByOne(valid: Valid[]): Promise<string[] | undefined> {
    const done: string[] = [];
    for (const v of valid) {
      for (let attempt = 1; ; attempt++) {
        try {
          const priced: PricedEvent[] = await priceEvents(this.#d.book, [v.event]);
          const r = await settleBatch(this.#d.db, priced);
          this.#count(r.inserted, r.duplicates);
          done.push(v.id);
          break;
        } catch (err) {
          if (!isTransientDbError(err)) {
            this.#d.metrics.deadLettered.inc();
            this.#d.log.error({ err, eventId: v.event.id }, 'usage event refused by Postgres; dead-lettered');
            await this.#deadLetter(
              v.id,
              ['e', JSON.stringify(v.event)],
              `refused: ${(err as Error).message}`,
            );
            done.push(v.id);
            break;
          }
          if (this.stopping) return done.length > 0 ? done : undefined;
          await this.#backoff(attempt);
          if (this.stopping) return done.length > 0 ? done : undefined;
        }
      }
    }
    return done;
  }

  #count(inserted: PricedEvent[], duplicates: number): void {
    const { metrics } = this.#d;
    metrics.settled.inc({ result: 'settled' }, inserted.length);
    if (duplicates > 0) metrics.settled.inc({ result: 'duplicate' }, duplicates);
    for (const p of inserted) {
      if (p.unpriced) metrics.unpriced.inc({ provider: p.event.provider, model: p.event.model });
      if (p.costMicros > 0n) metrics.costMicros.inc({ provider: p.event.provider }, Number(p.costMicros));
    }
  }

  async #deadLetter(streamId: string, fields: string[], reason: string): Promise<void> {
    try {
      await this.#d.redis.xadd(
        this.#d.keys.k('usage', 'dead'),
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
      this.#d.log.error({ err, streamId }, 'could not write dead letter');
    }
  }

  /** XACK after commit. Retried while Redis is away; giving up only means a harmless redelivery. */
  async #ack(ids: string[]): Promise<void> {
    if (ids.length === 0) return;
    const { redis, keys, log } = this.#d;
    for (let attempt = 1; ; attempt++) {
      try {
        await redis.xack(keys.usage, keys.usageGroup, ...ids);
        return;
      } catch (err) {
        log.warn({ err, attempt }, 'XACK failed; retrying (settlement is already committed)');
        if (this.stopping) return;
        await this.#backoff(attempt);
      }
    }
  }

  /** Exponential backoff with jitter, capped; returns early on stop. */
  async #backoff(attempt: number): Promise<void> {
    const cap = Math.min(this.#o.backoffMaxMs, this.#o.backoffMinMs * 2 ** Math.min(attempt - 1, 20));
    const ms = cap / 2 + Math.random() * (cap / 2);
    await sleep(ms, undefined, { signal: this.#stop.signal }).catch(() => {});
  }
}
