import type { UsageEvent } from '@faregate/contracts/usage';
import type { Db } from '@faregate/db/client';
import type { Keys } from '@faregate/queue/keys';
import type { RedisClient } from '@faregate/queue/redis';
import type { Logger } from 'pino';
import { startSpan, type Tracing } from '@faregate/observability/tracing';
import { isTransientDbError } from './errors.ts';
import { parseEntry } from './event.ts';
import { type PricedEvent, type SettleResult, settleBatch } from './ledger.ts';
import type { BillingMetrics } from './metrics.ts';
import type { PriceBook } from './price-book.ts';
import { priceEvents } from './pricing.ts';
import type { Entry } from './stream.ts';
import { StreamGroup, type StreamGroupOptions } from './stream-group.ts';

export interface ConsumerDeps {
  /** Commands (XREADGROUP, XACK, XAUTOCLAIM, status); never blocked by a read. */
  redis: RedisClient;
  db: Db;
  keys: Keys;
  book: PriceBook;
  metrics: BillingMetrics;
  log: Logger;
  /** Traces (OTLP), off unless configured: each settled event's span joins its request's trace. */
  tracing?: Tracing;
}

export type ConsumerOptions = StreamGroupOptions;

export const defaultConsumerOptions: Omit<ConsumerOptions, 'consumer'> = {
  batchSize: 500,
  batchMs: 50,
  claimIdleMs: 30_000,
  claimEveryMs: 5_000,
  backoffMinMs: 100,
  backoffMaxMs: 10_000,
  statusEveryMs: 2_000,
  idleBlockMs: 1_000,
};

interface Valid {
  entry: Entry;
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
  #g: StreamGroup;

  constructor(deps: ConsumerDeps, opts: Partial<ConsumerOptions> & { consumer: string }) {
    this.#d = deps;
    const { keys, metrics } = deps;
    this.#g = new StreamGroup(
      deps,
      { keys: keys.usageStreams, group: keys.usageGroup, deadLetters: keys.usageDeadLetters },
      { ...defaultConsumerOptions, ...opts },
      {
        process: (entries) => this.#process(entries),
        status: (s) => {
          metrics.pending.set(s.pending);
          metrics.backlog.set(s.backlog);
          metrics.oldestAgeSeconds.set(
            s.oldestMs === null ? 0 : Math.max(0, (Date.now() - s.oldestMs) / 1000),
          );
        },
      },
    );
  }

  get stopping(): boolean {
    return this.#g.stopping;
  }

  start(): Promise<void> {
    return this.#g.start();
  }

  /** Finishes the batch in hand (if Postgres is reachable), then returns. Unacked entries stay pending. */
  stop(): Promise<void> {
    return this.#g.stop();
  }

  /** Updates lag gauges and trims settled entries off the stream (billing owns its retention). */
  refreshStatus(): Promise<void> {
    return this.#g.refreshStatus();
  }

  /** Lag over every usage partition. */
  status(): ReturnType<StreamGroup['status']> {
    return this.#g.status();
  }

  /** Returns the entries to ack, or undefined to leave the batch pending (stopped while Postgres is away). */
  async #process(entries: Entry[]): Promise<Entry[] | undefined> {
    const { metrics, log } = this.#d;
    const valid: Valid[] = [];
    const ackNow: Entry[] = [];
    for (const entry of entries) {
      const [id, fields] = entry;
      const p = parseEntry(fields);
      if (p.ok) valid.push({ entry, event: p.event });
      else {
        metrics.malformed.inc();
        log.warn({ streamId: id, reason: p.reason }, 'malformed usage event; acked without settling');
        if (fields) await this.#g.deadLetter(entry, fields, `malformed: ${p.reason}`);
        ackNow.push(entry);
      }
    }
    const settledIds = await this.#settle(valid);
    if (settledIds === undefined) return undefined;
    return [...ackNow, ...settledIds];
  }

  /** Settles with retry; returns the entries to ack, or undefined when stopped before success. */
  async #settle(valid: Valid[]): Promise<Entry[] | undefined> {
    if (valid.length === 0) return [];
    const { metrics, log, db, book } = this.#d;
    for (let attempt = 1; ; attempt++) {
      try {
        const priced = await priceEvents(
          book,
          valid.map((v) => v.event),
        );
        const end = metrics.batchSeconds.startTimer();
        const started = Date.now();
        const r = await settleBatch(db, priced);
        end();
        this.#count(r);
        this.#trace(r.inserted, started);
        return valid.map((v) => v.entry);
      } catch (err) {
        if (!isTransientDbError(err)) {
          metrics.batchErrors.inc({ kind: 'batch_rejected' });
          log.error({ err }, 'settlement batch rejected; settling events one by one');
          return this.#settleOneByOne(valid);
        }
        metrics.batchErrors.inc({ kind: 'transient' });
        log.warn({ err, attempt }, 'settlement failed (Postgres unavailable?); will retry, nothing acked');
        if (this.stopping) return undefined;
        await this.#g.backoff(attempt);
        if (this.stopping) return undefined;
      }
    }
  }

  /** Isolates a poison event: each event in its own transaction; one Postgres refuses is dead-lettered. */
  async #settleOneByOne(valid: Valid[]): Promise<Entry[] | undefined> {
    const done: Entry[] = [];
    for (const v of valid) {
      for (let attempt = 1; ; attempt++) {
        try {
          const priced: PricedEvent[] = await priceEvents(this.#d.book, [v.event]);
          const started = Date.now();
          const r = await settleBatch(this.#d.db, priced);
          this.#count(r);
          this.#trace(r.inserted, started);
          done.push(v.entry);
          break;
        } catch (err) {
          if (!isTransientDbError(err)) {
            this.#d.metrics.deadLettered.inc();
            this.#d.log.error({ err, eventId: v.event.id }, 'usage event refused by Postgres; dead-lettered');
            await this.#g.deadLetter(
              v.entry,
              ['e', JSON.stringify(v.event)],
              `refused: ${(err as Error).message}`,
            );
            done.push(v.entry);
            break;
          }
          if (this.stopping) return done.length > 0 ? done : undefined;
          await this.#g.backoff(attempt);
          if (this.stopping) return done.length > 0 ? done : undefined;
        }
      }
    }
    return done;
  }

  /** Tracing on: a span per settled event, in its request's trace, over the transaction that settled it. */
  #trace(inserted: PricedEvent[], started: number): void {
    const tracing = this.#d.tracing;
    if (!tracing?.enabled) return;
    for (const { event, costMicros, unpriced } of inserted) {
      if (!event.trace) continue;
      startSpan(tracing, 'settle usage', event.trace, {
        startTime: started,
        attributes: {
          'faregate.usage_event_id': event.id,
          'faregate.request_id': event.requestId,
          'faregate.outcome': event.outcome,
          'faregate.cost_micro_usd': Number(costMicros),
          'faregate.unpriced': unpriced === true,
          'faregate.provider': event.provider,
          'gen_ai.response.model': event.model,
          'gen_ai.usage.input_tokens': event.inputTokens,
          'gen_ai.usage.output_tokens': event.outputTokens,
        },
      }).end();
    }
  }

  #count({ inserted, duplicates, corrections, reruns }: SettleResult): void {
    const { metrics, log } = this.#d;
    for (const r of reruns) {
      metrics.settled.inc({ result: 'rerun' });
      metrics.rerunMicros.inc({ provider: r.provider }, Number(r.costMicros));
      log.warn(
        { eventId: r.id, requestId: r.requestId, provider: r.provider, costMicros: Number(r.costMicros) },
        'a call of a request whose final event was settled already (Redis lost the writes that ended it): recorded in rerun_calls, not charged',
      );
    }
    metrics.settled.inc({ result: 'settled' }, inserted.length);
    if (duplicates > 0) metrics.settled.inc({ result: 'duplicate' }, duplicates);
    if (corrections.length > 0) metrics.settled.inc({ result: 'corrected' }, corrections.length);
    for (const c of corrections) {
      const direction = c.deltaMicros > 0n ? 'up' : 'down';
      const amount = c.deltaMicros > 0n ? c.deltaMicros : -c.deltaMicros;
      metrics.correctedMicros.inc({ provider: c.provider, direction }, Number(amount));
    }
    for (const p of inserted) {
      if (p.unpriced) metrics.unpriced.inc({ provider: p.event.provider, model: p.event.model });
      if (p.costMicros > 0n) metrics.costMicros.inc({ provider: p.event.provider }, Number(p.costMicros));
    }
  }
}
