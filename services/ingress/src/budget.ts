import { randomBytes } from 'node:crypto';
import type { LeasedHold } from '@faregate/contracts/jobs';
import type { Db } from '@faregate/db/client';
import { placeHold, releaseHold, shrinkHold } from '@faregate/db/holds';

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
  | { ok: false; reason: 'insufficient_balance' | 'key_limit' };

export interface BudgetOptions {
  /** A lease covers this many requests the size of the one that asked for it; 1 turns leases off. */
  leaseRequests: number;
  /** Upper bound of one lease (µUSD): what a crashed ingress can keep reserved until the lease expires. */
  leaseMaxMicros: bigint;
  /** A lease admits requests for this long; then a new one is taken and the rest of the old one given back. */
  leaseTtlMs: number;
  /** A lease nobody used for this long is given back. */
  idleMs: number;
  /** Longest a request may run: a lease row outlives every request it admitted by at least this. */
  requestTimeoutMs: number;
}

interface Lease {
  id: string;
  /** Not yet promised to a request (µUSD); the row in Postgres also covers the requests in flight. */
  remaining: bigint;
  createdAt: number;
  usedAt: number;
}

interface Slot {
  lease?: Lease;
  acquiring?: Promise<void>;
  /** After a lease was refused (low balance, key limit), requests hold their exact amount until then. */
  exactUntil: number;
}

/** How long requests hold exact amounts after a lease was refused, before a lease is tried again. */
const EXACT_MS = 1_000;
/** A hold row outlives the last request it may admit by the request timeout plus this. */
const EXPIRY_SLACK_MS = 5 * 60_000;

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
 * that dies keeps at most `leaseMaxMicros` per (account, key) reserved until the row expires.
 */
export class Budget {
  readonly #db: Db;
  readonly #opts: BudgetOptions;
  readonly #slots = new Map<string, Slot>();
  readonly #timer: NodeJS.Timeout;
  #closed = false;

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
        slot = { exactUntil: 0 };
        this.#slots.set(k, slot);
      }
      const now = Date.now();
      const lease = slot.lease;
      if (lease && now - lease.createdAt < this.#opts.leaseTtlMs && lease.remaining >= micros) {
        lease.remaining -= micros;
        lease.usedAt = now;
        return { ok: true, reservation: { leased: true, hold: { id: lease.id, micros: micros.toString() } } };
      }
      if (slot.acquiring) {
        await slot.acquiring;
        continue;
      }
      const size = this.#leaseSize(micros);
      if (this.#closed || size <= micros || now < slot.exactUntil) {
        return this.#exact(r);
      }
      // Take a new lease (one request does; the others wait for it), and give back the old one's rest.
      if (lease) this.#retire(slot, lease);
      const id = `lease_${randomBytes(12).toString('base64url')}`;
      const placing = placeHold(this.#db, {
        requestId: id,
        accountId,
        keyId,
        amountMicros: size,
        expiresAt: new Date(now + this.#opts.leaseTtlMs + this.#opts.requestTimeoutMs + EXPIRY_SLACK_MS),
      });
      const s = slot;
      s.acquiring = placing
        .then(
          (r) => {
            if (r.ok) s.lease = { id, remaining: size, createdAt: now, usedAt: now };
            else s.exactUntil = Date.now() + EXACT_MS;
          },
          () => {},
        )
        .finally(() => {
          s.acquiring = undefined;
        });
      await placing; // Postgres failing fails this request (and the waiters retry on their own).
      await s.acquiring;
    }
  }

  /** Gives a reservation back: the request was refused or not queued after it was admitted. */
  async release(r: Reservation): Promise<void> {
    if (!r.leased) return releaseHold(this.#db, r.requestId);
    const micros = BigInt(r.hold.micros);
    for (const slot of this.#slots.values()) {
      if (slot.lease?.id === r.hold.id) {
        slot.lease.remaining += micros;
        return;
      }
    }
    await shrinkHold(this.#db, r.hold.id, micros);
  }

  /** Gives back the unused rest of every lease; admission then holds exact amounts. */
  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#timer);
    const done: Promise<void>[] = [];
    for (const slot of this.#slots.values()) if (slot.lease) done.push(this.#retire(slot, slot.lease));
    await Promise.all(done);
  }

  #leaseSize(micros: bigint): bigint {
    const want = micros * BigInt(Math.max(1, this.#opts.leaseRequests));
    return want < this.#opts.leaseMaxMicros ? want : this.#opts.leaseMaxMicros;
  }

  async #exact(r: AdmitRequest): Promise<AdmitResult> {
    const placed = await placeHold(this.#db, {
      requestId: r.requestId,
      accountId: r.accountId,
      keyId: r.keyId,
      amountMicros: r.micros,
      // A request that never settles (lost) frees its hold a little after its deadline.
      expiresAt: new Date(r.deadline + EXPIRY_SLACK_MS),
    });
    return placed.ok ? { ok: true, reservation: { leased: false, requestId: r.requestId } } : placed;
  }

  #retire(slot: Slot, lease: Lease): Promise<void> {
    if (slot.lease === lease) slot.lease = undefined;
    const rest = lease.remaining;
    lease.remaining = 0n;
    // Failing to give the rest back only keeps it reserved until the row expires.
    return shrinkHold(this.#db, lease.id, rest).catch(() => {});
  }

  #sweep(): void {
    const now = Date.now();
    for (const [k, slot] of this.#slots) {
      if (slot.acquiring) continue;
      const lease = slot.lease;
      if (
        lease &&
        (now - lease.usedAt >= this.#opts.idleMs || now - lease.createdAt >= this.#opts.leaseTtlMs)
      ) {
        void this.#retire(slot, lease);
      }
      if (!slot.lease && now >= slot.exactUntil) this.#slots.delete(k);
    }
  }
}
