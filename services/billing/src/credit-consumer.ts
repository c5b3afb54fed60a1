import type { CreditCommand } from '@faregate/contracts/credits';
import type { Db } from '@faregate/db/client';
import type { Keys } from '@faregate/queue/keys';
import type { RedisClient } from '@faregate/queue/redis';
import type { Logger } from 'pino';
import { applyCreditCommand, parseCreditEntry, refuseCreditCommand } from './credits.ts';
import { isTransientDbError, sqlState } from './errors.ts';
import type { BillingMetrics } from './metrics.ts';
import type { Entry } from './stream.ts';
import { StreamGroup, type StreamGroupOptions } from './stream-group.ts';

export interface CreditConsumerDeps {
  redis: RedisClient;
  db: Db;
  keys: Keys;
  metrics: BillingMetrics;
  log: Logger;
}

export const defaultCreditConsumerOptions: Omit<StreamGroupOptions, 'consumer'> = {
  batchSize: 100,
  // An admin is waiting for the answer: an idle group blocks on the stream (idleBlockMs), so a
  // command is read as soon as it lands; while commands keep coming, look again after 25 ms.
  batchMs: 25,
  claimIdleMs: 30_000,
  claimEveryMs: 5_000,
  backoffMinMs: 100,
  backoffMaxMs: 10_000,
  statusEveryMs: 5_000,
  idleBlockMs: 1_000,
};

/**
 * Executes credit commands (admin top-ups, bootstrap credits) from their Redis Stream: each in its
 * own Postgres transaction under its idempotency key, then XACK. A crash in between redelivers the
 * command, and the second execution finds the recorded outcome and changes nothing. While Postgres is
 * away nothing is acked; the commands wait in the stream and are applied when it returns.
 */
export class CreditConsumer {
  #d: CreditConsumerDeps;
  #g: StreamGroup;

  constructor(deps: CreditConsumerDeps, opts: Partial<StreamGroupOptions> & { consumer: string }) {
    this.#d = deps;
    this.#g = new StreamGroup(
      deps,
      {
        keys: [deps.keys.credits],
        group: deps.keys.creditsGroup,
        deadLetters: deps.keys.deadLetters(deps.keys.credits),
      },
      { ...defaultCreditConsumerOptions, ...opts },
      { process: (entries) => this.#process(entries) },
    );
  }

  get stopping(): boolean {
    return this.#g.stopping;
  }

  start(): Promise<void> {
    return this.#g.start();
  }

  stop(): Promise<void> {
    return this.#g.stop();
  }

  /** Resolves once the commands queued before start (e.g. a bootstrap credit) are executed. */
  caughtUp(): Promise<void> {
    return this.#g.caughtUp();
  }

  async #process(entries: Entry[]): Promise<Entry[] | undefined> {
    const { metrics, log } = this.#d;
    const done: Entry[] = [];
    for (const entry of entries) {
      const [id, fields] = entry;
      const p = parseCreditEntry(fields);
      if (!p.ok) {
        metrics.credits.inc({ result: 'malformed' });
        log.warn({ streamId: id, reason: p.reason }, 'malformed credit command; acked without applying');
        if (fields) await this.#g.deadLetter(entry, fields, `malformed: ${p.reason}`);
        done.push(entry);
        continue;
      }
      const ok = await this.#apply(entry, p.command);
      if (!ok) return done.length > 0 ? done : undefined; // stopped while Postgres is away
      done.push(entry);
    }
    return done;
  }

  /** Applies one command, retrying while Postgres is unavailable; false when stopped first. */
  async #apply(entry: Entry, cmd: CreditCommand): Promise<boolean> {
    const { db, metrics, log } = this.#d;
    for (let attempt = 1; ; attempt++) {
      try {
        const r = await applyCreditCommand(db, cmd);
        metrics.credits.inc({ result: r.result });
        if (r.result === 'applied')
          log.info({ key: cmd.key, account: cmd.account, transactionId: r.transactionId }, 'credit applied');
        else if (r.result === 'refused') log.info({ key: cmd.key, reason: r.reason }, 'credit refused');
        return true;
      } catch (err) {
        if (!isTransientDbError(err)) return this.#refuse(entry, cmd, err);
        log.warn({ err, attempt, key: cmd.key }, 'credit not applied (Postgres unavailable?); will retry');
        if (this.stopping) return false;
        await this.#g.backoff(attempt);
        if (this.stopping) return false;
      }
    }
  }

  /** Postgres refused the command's content: record the refusal (or dead-letter it if even that fails). */
  async #refuse(entry: Entry, cmd: CreditCommand, cause: unknown): Promise<boolean> {
    const { db, metrics, log } = this.#d;
    log.error({ err: cause, key: cmd.key }, 'credit command refused by Postgres');
    for (let attempt = 1; ; attempt++) {
      try {
        // A sum past what the ledger's int8 columns hold (the account's, or the funding account's).
        await refuseCreditCommand(db, cmd, sqlState(cause) === '22003' ? 'out_of_range' : 'invalid');
        metrics.credits.inc({ result: 'refused' });
        return true;
      } catch (err) {
        if (!isTransientDbError(err)) {
          metrics.credits.inc({ result: 'dead_lettered' });
          await this.#g.deadLetter(entry, ['c', JSON.stringify(cmd)], `refused: ${(err as Error).message}`);
          return true;
        }
        if (this.stopping) return false;
        await this.#g.backoff(attempt);
        if (this.stopping) return false;
      }
    }
  }
}
