import { randomBytes } from 'node:crypto';
import { GatewayError } from '@faregate/contracts/errors';
import { newId } from '@faregate/contracts/ids';
import type { LeasedHold } from '@faregate/contracts/jobs';
import type { Db } from '@faregate/db/client';
import { DbTimeoutError, failedToConnect, isDbUnavailable } from '@faregate/db/unavailable';
import {
  type PlaceHoldOpts,
  type PlaceHoldResult,
  placeHold,
  releaseHold,
  shrinkHold,
} from '@faregate/db/holds';

/** What admitted a request: a share of a lease, or the request's own hold row. */
export type Reservation = { leased: true; hold: LeasedHold } | { leased: false; requestId: string };

/** A request to admit: its maximum cost `micros`, held until a little after `deadline` (epoch ms). */
export interface AdmitRequest {
  requestId: string;
  accountId: string;
  keyId: string;
  micros: bigint;
  deadline: number;
}

export type AdmitResult =
  | { ok: true; reservation: Reservation }
  | { ok: false; reason: 'insufficient_balance' | 'key_limit'; held: boolean };

export interface BudgetOptions {
  /** A lease covers this many requests the size of the one that asked for it; 1 turns leases off. */
  leaseRequests: number;
  /**
   * Upper bound of one lease (µUSD): what a crashed ingress can keep reserved until the lease expires,
   * unless that is fewer than `leaseMinRequests` requests of the asking size.
   */
  leaseMaxMicros: bigint;
  /**
   * A lease covers at least this many requests (at most `leaseRequests`), even past `leaseMaxMicros`:
   * a request's worst case can be large (no `max_tokens`, a fallback model with a 64k-token output
   * cap), and a lease that covers one such request means two Postgres round trips per request.
   */
  leaseMinRequests: number;
  /** A lease admits requests for this long; then a new one is taken and the rest of the old one given back. */
  leaseTtlMs: number;
  /** A lease nobody used for this long is given back. */
  idleMs: number;
  /** Longest a request may run: a lease row outlives every request it admitted by at least this. */
  requestTimeoutMs: number;
  /**
   * Longest admission waits for Postgres to place a hold before answering `overloaded` (503): a
   * server that stopped answering would otherwise hold the request until TCP gives up. Default 5 s.
   */
  dbTimeoutMs?: number;
  /** How long `close()` keeps retrying give-backs while Postgres is unreachable. Default 10 s. */
  closeTimeoutMs?: number;
}

interface Lease {
  id: string;
  /** What the row was placed for (µUSD). */
  size: bigint;
  /** Not yet promised to a request (µUSD); the row in Postgres also covers the requests in flight. */
  remaining: bigint;
  createdAt: number;
  usedAt: number;
  /** When the row stops counting: giving the rest back is pointless after that. */
  expiresAt: number;
}

interface Slot {
  lease?: Lease;
  /** The next lease, placed before `lease` runs out (see Budget.#ahead); nothing admitted from it yet. */
  next?: Lease;
  /** The lease being placed; settles with the error that failed it, if any (its waiters share it). */
  acquiring?: Promise<unknown>;
  /** After a lease was refused (low balance, key limit), requests hold their exact amount until then. */
  exactUntil: number;
  /** After placing a next lease failed (Postgres unreachable), none is tried ahead until then. */
  aheadAfter: number;
}

/** How long requests hold exact amounts after a lease was refused, before a lease is tried again. */
const EXACT_MS = 1_000;
/**
 * The next lease is placed once the current one has less than 1/AHEAD_SHARE of its size left (or
 * less than the asking request's amount): the request that finds it spent then takes the next one
 * in memory instead of waiting for Postgres. (A lease that reaches the end of its life unspent is
 * still replaced by the request that finds it so: that happens once per lease lifetime at most, and
 * placing its successor early would reserve two whole leases meanwhile.)
 */
const AHEAD_SHARE = 4n;
/** A hold row outlives the last request it may admit by the request timeout plus this. */
const EXPIRY_SLACK_MS = 5 * 60_000;
/** What a caller refused for a database outage is asked to wait before retrying. */
const RETRY_AFTER_MS = 2_000;
/** Backoff between attempts to give budget back while Postgres is unreachable. */
const GIVE_BACK_MIN_MS = 100;
const GIVE_BACK_MAX_MS = 5_000;

/** Something to give back (a lease's rest, a refused request's hold), retried until `until`. */
interface GiveBack {
  run: () => Promise<void>;
  until: number;
}

/** Postgres did not answer within `dbTimeoutMs` (the query may still run). */

/**
 * Admission against the account's budget. Holds live in Postgres (`holds`, placed atomically by
 * `sy_place_hold` against balance − active holds and the key's spend limit), but a Postgres round
 * trip per request is the largest cost on the request path, and every hold of an account locks the
 * same row. So this process reserves budget in leases: one hold row sized for many requests of the
 * (account, key), from which it admits requests in memory. Billing gives back each request's share
 * with its final usage event (the job carries the lease id and the share); this process gives back
 * what it did not use when the lease is rotated, idle, or the process stops.
 *
 * Exactness where it matters: when the available budget cannot cover a whole lease, requests fall
 * back to holding their exact maximum cost, one row each, so an account down to its last dollars is
 * admitted exactly as far as its balance goes. What a lease can cost a tenant is bounded: a process
 * that dies keeps at most `leaseMaxMicros` (or `leaseMinRequests` of its largest request) per
 * (account, key) reserved until the row expires.
 */
export class Budget {
  readonly #db: Db;
  readonly #opts: BudgetOptions;
  readonly #slots = new Map<string, Slot>();
  readonly #timer: NodeJS.Timeout;
  #closed = false;
  readonly #retries: GiveBack[] = [];
  /** Per account: leases' rest being given back because a request ran short, and how many times it was. */
  readonly #givingBack = new Map<string, Promise<void>>();
  readonly #givenBack = new Map<string, number>();
  #draining: Promise<void> | undefined;
  #wake: (() => void) | undefined;
  /** Retries stop at this time (set by `close()`). */
  #stopAt = Number.POSITIVE_INFINITY;

  constructor(db: Db, opts: BudgetOptions) {
    this.#db = db;
    this.#opts = opts;
    this.#timer = setInterval(() => this.#sweep(), Math.max(100, Math.floor(opts.idleMs / 2)));
    this.#timer.unref();
  }

  /** Reserves `micros` for a request whose deadline is `deadline` (epoch ms). */
  async admit(r: AdmitRequest): Promise<AdmitResult> {
    const { accountId, keyId, micros } = r;
    const k = `${accountId}\u0000${keyId}`;
    for (;;) {
      let slot = this.#slots.get(k);
      if (!slot) {
        slot = { exactUntil: 0, aheadAfter: 0 };
        this.#slots.set(k, slot);
      }
      const now = Date.now();
      const lease = slot.lease;
      if (lease && this.#covers(lease, micros, now)) {
        lease.remaining -= micros;
        lease.usedAt = now;
        // The next lease is not idle while this one is in use (the sweep would give it back).
        if (slot.next) slot.next.usedAt = now;
        else this.#ahead(slot, r, lease, now);
        return { ok: true, reservation: { leased: true, hold: { id: lease.id, micros: micros.toString() } } };
      }
      const next = slot.next;
      if (next && this.#covers(next, micros, now)) {
        // The lease placed ahead takes over; what the spent one has left goes back.
        if (lease) this.#retire(slot, lease);
        slot.next = undefined;
        slot.lease = next;
        continue;
      }
      if (slot.acquiring) {
        // The attempt this request waited for failed (Postgres unreachable): so does this request.
        const failed = await slot.acquiring;
        if (failed) throw failed;
        continue;
      }
      const size = this.#leaseSize(micros);
      if (this.#closed || size <= micros || now < slot.exactUntil) {
        return this.#exact(r);
      }
      // Take a new lease (one request does; the others wait for it), and give back the old ones' rest.
      if (lease) this.#retire(slot, lease);
      if (next) this.#retire(slot, next);
      const failed = await this.#acquire(slot, r, size, false);
      if (failed) throw failed;
    }
  }

  #covers(lease: Lease, micros: bigint, now: number): boolean {
    return now - lease.createdAt < this.#opts.leaseTtlMs && lease.remaining >= micros;
  }

  /**
   * Places the next lease in the background when `lease` is nearly spent, so that requests do not
   * wait for Postgres when it runs out (at 1 connection, one request in 16 did, at 32 every request
   * in flight). What this can keep reserved beyond the requests in flight is at most a lease and a
   * quarter per (account, key). Nothing is placed ahead while requests hold exact amounts.
   */
  #ahead(slot: Slot, r: AdmitRequest, lease: Lease, now: number): void {
    if (slot.next || slot.acquiring || this.#closed) return;
    if (now < slot.exactUntil || now < slot.aheadAfter) return;
    if (lease.remaining >= r.micros && lease.remaining * AHEAD_SHARE >= lease.size) return;
    const size = this.#leaseSize(r.micros);
    if (size <= r.micros) return;
    void this.#acquire(slot, r, size, true).then((failed) => {
      if (failed) slot.aheadAfter = Date.now() + EXACT_MS;
    });
  }

  /**
   * Places a lease of `size` for the slot: as its current lease, or (`ahead`) as its next one.
   * Resolves with the error that failed it, if any; a refusal (balance, key limit) makes requests
   * hold exact amounts for a while.
   */
  #acquire(
    slot: Slot,
    r: { accountId: string; keyId: string },
    size: bigint,
    ahead: boolean,
  ): Promise<unknown> {
    const now = Date.now();
    const id = `lease_${randomBytes(12).toString('base64url')}`;
    const expiresAt = now + this.#opts.leaseTtlMs + this.#opts.requestTimeoutMs + EXPIRY_SLACK_MS;
    const acquiring = this.#place({
      requestId: id,
      accountId: r.accountId,
      keyId: r.keyId,
      amountMicros: size,
      expiresAt: new Date(expiresAt),
    })
      .then(
        (res) => {
          if (!res.ok) {
            slot.exactUntil = Date.now() + EXACT_MS;
            return undefined;
          }
          const placed: Lease = { id, size, remaining: size, createdAt: now, usedAt: now, expiresAt };
          if (ahead) slot.next = placed;
          else slot.lease = placed;
          // Placed while closing: close() gave back the slot's leases already.
          if (this.#closed) void this.#retire(slot, placed);
          return undefined;
        },
        (e: unknown) => e,
      )
      .finally(() => {
        slot.acquiring = undefined;
      });
    slot.acquiring = acquiring;
    return acquiring;
  }

  /**
   * Gives a reservation back: the request was refused or not queued after it was admitted. Resolves
   * once given back, or queued for retries when Postgres is unreachable (the caller's answer does
   * not wait for the database to come back).
   */
  async release(r: Reservation): Promise<void> {
    // Bounds only: an exact hold expires after its request's deadline, a lease row later still.
    const until = Date.now() + this.#opts.leaseTtlMs + this.#opts.requestTimeoutMs + EXPIRY_SLACK_MS;
    if (!r.leased) return this.#giveBack(() => releaseHold(this.#db, r.requestId), until);
    const micros = BigInt(r.hold.micros);
    for (const slot of this.#slots.values()) {
      if (slot.lease?.id === r.hold.id) {
        slot.lease.remaining += micros;
        return;
      }
    }
    // One id per give-back, reused by its retries: a retry after a lost reply gives nothing twice.
    const givebackId = newId('gb');
    return this.#giveBack(() => shrinkHold(this.#db, r.hold.id, micros, givebackId), until);
  }

  /**
   * Gives back the unused rest of every lease; admission then holds exact amounts. What Postgres
   * refuses meanwhile is retried for up to `closeTimeoutMs`, then left to expire with its row.
   */
  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#timer);
    this.#stopAt = Date.now() + (this.#opts.closeTimeoutMs ?? 10_000);
    const done: Promise<void>[] = [];
    for (const slot of this.#slots.values())
      for (const lease of [slot.lease, slot.next]) if (lease) done.push(this.#retire(slot, lease));
    await Promise.all(done);
    this.#wake?.(); // retry now, not after the current backoff
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.#draining,
      new Promise((r) => {
        timer = setTimeout(r, Math.max(0, this.#stopAt - Date.now()));
      }),
    ]);
    clearTimeout(timer);
  }

  #leaseSize(micros: bigint): bigint {
    const requests = Math.max(1, this.#opts.leaseRequests);
    const want = micros * BigInt(requests);
    const floor = micros * BigInt(Math.min(requests, Math.max(1, this.#opts.leaseMinRequests)));
    const cap = floor > this.#opts.leaseMaxMicros ? floor : this.#opts.leaseMaxMicros;
    return want < cap ? want : cap;
  }

  async #exact(r: AdmitRequest): Promise<AdmitResult> {
    const place = () =>
      this.#place({
        requestId: r.requestId,
        accountId: r.accountId,
        keyId: r.keyId,
        amountMicros: r.micros,
        // A request that never settles (lost) frees its hold a little after its deadline.
        expiresAt: new Date(r.deadline + EXPIRY_SLACK_MS),
      });
    const given = this.#givenBack.get(r.accountId) ?? 0;
    let placed = await place();
    if (!placed.ok && placed.reason === 'insufficient_balance') {
      // What the balance lacks may sit in leases this process holds for the account (another key's,
      // sized for its own large requests): their rest goes back, and the request is tried once more.
      // Requests refused together wait for the one give-back; one refused just before a give-back
      // ended (the count moved on) tries again too.
      const giving = this.#givingBack.get(r.accountId) ?? this.#giveBackLeases(r.accountId);
      if (giving) await giving;
      if (giving || (this.#givenBack.get(r.accountId) ?? 0) !== given) placed = await place();
    }
    return placed.ok ? { ok: true, reservation: { leased: false, requestId: r.requestId } } : placed;
  }

  /** Gives back the rest of every lease this process holds for `accountId`; undefined if none has any. */
  #giveBackLeases(accountId: string): Promise<void> | undefined {
    const prefix = `${accountId}\u0000`;
    const giving: Promise<void>[] = [];
    for (const [k, slot] of this.#slots)
      if (k.startsWith(prefix))
        for (const lease of [slot.lease, slot.next])
          if (lease && lease.remaining > 0n) giving.push(this.#retire(slot, lease));
    if (giving.length === 0) return undefined;
    const done = Promise.all(giving).then(() => {
      this.#givenBack.set(accountId, (this.#givenBack.get(accountId) ?? 0) + 1);
      this.#givingBack.delete(accountId);
    });
    this.#givingBack.set(accountId, done);
    return done;
  }

  /**
   * Places a hold, bounded by `dbTimeoutMs`. Postgres unreachable (or not answering) becomes
   * `overloaded` with a retry hint; any other error (a bug) stays what it is. A placement that may
   * have landed although it failed here (the connection died after the query was sent, or it was
   * still under way at the timeout) is deleted once Postgres answers again: nothing was admitted
   * from it, and it would keep budget reserved until it expires.
   */
  async #place(opts: PlaceHoldOpts): Promise<PlaceHoldResult> {
    const placing = placeHold(this.#db, opts);
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        placing,
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new DbTimeoutError('placing a budget hold timed out')),
            this.#opts.dbTimeoutMs ?? 5_000,
          );
        }),
      ]);
    } catch (e) {
      if (!isDbUnavailable(e)) throw e;
      const until = opts.expiresAt.getTime();
      const forget = () => this.#retryLater({ run: () => releaseHold(this.#db, opts.requestId), until });
      placing.then(
        (r) => r.ok && forget(),
        (late: unknown) => isDbUnavailable(late) && !failedToConnect(late) && forget(),
      );
      throw new GatewayError({
        code: 'overloaded',
        message: 'The gateway cannot reach its database to reserve budget; retry shortly.',
        retryable: true,
        retryAfterMs: RETRY_AFTER_MS,
        cause: e,
      });
    } finally {
      clearTimeout(timer);
    }
  }

  #retire(slot: Slot, lease: Lease): Promise<void> {
    if (slot.lease === lease) slot.lease = undefined;
    if (slot.next === lease) slot.next = undefined;
    const rest = lease.remaining;
    lease.remaining = 0n;
    // Nothing left (a lease of equal requests is used up whole): billing drops the row when the last
    // share settles, so a round trip here would change nothing.
    if (rest === 0n) return Promise.resolve();
    const givebackId = newId('gb');
    return this.#giveBack(() => shrinkHold(this.#db, lease.id, rest, givebackId), lease.expiresAt).catch(
      () => {},
    );
  }

  /**
   * Gives budget back now or, when Postgres is unreachable, from a retry queue with backoff until
   * `until` (past the row's expiry it no longer counts anyway). Other errors are the caller's.
   */
  async #giveBack(run: () => Promise<void>, until: number): Promise<void> {
    try {
      await run();
    } catch (e) {
      if (!isDbUnavailable(e)) throw e;
      this.#retryLater({ run, until });
    }
  }

  #retryLater(item: GiveBack): void {
    this.#retries.push(item);
    this.#draining ??= this.#drain().finally(() => {
      this.#draining = undefined;
    });
  }

  /** Retries the queued give-backs one at a time (oldest first), backing off while Postgres is away. */
  async #drain(): Promise<void> {
    // Everything queued has just failed: wait before the first retry, not after a success.
    let wait = GIVE_BACK_MIN_MS;
    for (;;) {
      const item = this.#retries[0];
      if (!item) return;
      let now = Date.now();
      if (wait > 0) {
        const ms = Math.min(wait * (0.75 + Math.random() / 2), item.until - now, this.#stopAt - now);
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, Math.max(0, ms));
          t.unref();
          this.#wake = () => {
            clearTimeout(t);
            resolve();
          };
        });
        this.#wake = undefined;
        now = Date.now();
      }
      if (now >= Math.min(item.until, this.#stopAt)) {
        this.#retries.shift(); // past the row's expiry, or closing took too long: it expires with its row
        continue;
      }
      try {
        await item.run();
        this.#retries.shift();
        wait = 0;
      } catch (e) {
        if (!isDbUnavailable(e)) {
          this.#retries.shift();
          wait = 0;
        } else wait = Math.min(Math.max(wait * 2, GIVE_BACK_MIN_MS), GIVE_BACK_MAX_MS);
      }
    }
  }

  #sweep(): void {
    const now = Date.now();
    for (const [k, slot] of this.#slots) {
      if (slot.acquiring) continue;
      for (const lease of [slot.lease, slot.next])
        if (
          lease &&
          (now - lease.usedAt >= this.#opts.idleMs || now - lease.createdAt >= this.#opts.leaseTtlMs)
        )
          void this.#retire(slot, lease);
      if (!slot.lease && !slot.next && now >= slot.exactUntil) this.#slots.delete(k);
    }
  }
}
