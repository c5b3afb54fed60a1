import type { GatewayError } from '@faregate/contracts/errors';
import type { JobData } from '@faregate/contracts/jobs';
import type { AttemptInput, AttemptOutcome } from './attempt.ts';
import type { WorkerDeps } from './deps.ts';
import type { InFlightGate } from './limits/in-flight.ts';
import type { Admission } from './limits/limiter.ts';
import { jobTokenEstimate } from './embeddings.ts';
import { pauseRefusal } from './outcome.ts';

/** How a job reached this process (intake/), and what that intake knows about the attempt. */
export interface Pickup {
  data: JobData;
  via: 'queue' | 'lane';
  /** Attempts of this hop started on this intake, this one included (BullMQ `attemptsStarted`; the lane: 1). */
  starts: number;
  /** Attempts of this hop finished on this intake before this one (BullMQ `attemptsMade`; the lane: 0). */
  made: number;
  /** The job is re-run after its worker stalled or died. */
  stalled: boolean;
  /** See AttemptInput.speculative: only an intake that can vouch for it sets it. */
  speculative: boolean;
  signal?: AbortSignal;
  onCalling?: () => void;
  /** See AttemptInput.beforeCall (the lane's last check before the provider call). */
  beforeCall?: () => true | Promise<boolean>;
}

/** What the runner needs: the pool's limits, its limiter, metrics, the attempt to run. */
export type RunnerDeps = Pick<WorkerDeps, 'config' | 'limits' | 'metrics'> & {
  limiter: Pick<WorkerDeps['limiter'], 'acquire' | 'admitLocal'>;
  /** Runs one attempt (attempt.ts; injected so the runner is tested alone). */
  attempt: (input: AttemptInput) => Promise<AttemptOutcome>;
  workerId: string;
  /** The pool's max-in-flight for lane runs (BullMQ's global concurrency counts queued runs). */
  inFlight?: Pick<InFlightGate, 'acquire' | 'release'>;
};

/**
 * Every job of the process goes through here, whichever intake delivered it: the process's slots,
 * admission (RPM/TPM through the shared limiter; learned pauses always), the provider key, attempt
 * numbering, the in-flight metric. What a `wait` or `retry` means for the job is the intake's.
 */
export class Runner {
  readonly #deps: RunnerDeps;
  #busy = 0;
  #laneBusy = 0;
  readonly #onChange = new Set<() => void>();

  constructor(deps: RunnerDeps) {
    this.#deps = deps;
  }

  /** Jobs running in this process (both intakes). */
  get busy(): number {
    return this.#busy;
  }

  /** Lane runs in this process (BullMQ's concurrency gives way to them). */
  get laneBusy(): number {
    return this.#laneBusy;
  }

  /**
   * Slots the lane may fill now: the process never runs more than WORKER_CONCURRENCY jobs, and
   * BullMQ keeps one (its concurrency cannot drop to zero).
   */
  laneFree(): number {
    const capacity = this.#deps.config.WORKER_CONCURRENCY;
    return Math.min(capacity - this.#busy, capacity - 1 - this.#laneBusy);
  }

  /**
   * The lane runs with two slots or more. Under a pool-wide max-in-flight each lane run takes room
   * from the InFlightGate, which keeps BullMQ's global concurrency at what lane runs leave.
   */
  laneAllowed(): boolean {
    return (
      this.#deps.config.WORKER_CONCURRENCY > 1 && (!this.#deps.limits.maxInFlight || !!this.#deps.inFlight)
    );
  }

  /** Called whenever a run starts or ends. */
  onChange(f: () => void): () => void {
    this.#onChange.add(f);
    return () => this.#onChange.delete(f);
  }

  /** The attempt number of a pickup: attempts made on the lane before the job was queued count first. */
  static attemptOf(p: Pick<Pickup, 'data' | 'starts'>): number {
    return (p.data.attemptBase ?? 0) + Math.max(1, p.starts);
  }

  async run(p: Pickup): Promise<AttemptOutcome> {
    const { data } = p;
    const { config, limits, metrics } = this.#deps;
    const attempt = Runner.attemptOf(p);
    const canWait = attempt < config.WORKER_MAX_STARTS;
    // A lane run under a max-in-flight first takes room in the pool (a queued run holds BullMQ's);
    // a full pool sends the job to the queue at once, where it waits its turn.
    const gate = p.via === 'lane' && limits.maxInFlight ? this.#deps.inFlight : undefined;
    const runId = `${this.#deps.workerId}:${data.id}`;
    if (gate && !(await gate.acquire(runId))) {
      metrics.rateLimitWaits.inc({ reason: 'in_flight' });
      p.onCalling?.();
      return { status: 'wait', waitMs: 0 };
    }
    try {
      return await this.#admitAndRun(p, attempt, canWait);
    } finally {
      if (gate) void gate.release(runId).catch(() => {});
    }
  }

  async #admitAndRun(p: Pickup, attempt: number, canWait: boolean): Promise<AttemptOutcome> {
    const { data } = p;
    const { limits, metrics } = this.#deps;
    const base = data.attemptBase ?? 0;
    // Admission before anything is written for the attempt: a job that must wait goes back untouched
    // and without using an attempt.
    const admission = await this.#admit(data);
    let forcedError: GatewayError | undefined;
    if (!admission.ok) {
      // Waited out only within the request's deadline and, for an interactive request, its patience:
      // past that it falls back or gets the 429 at once, as after a provider's own 429 (outcome.ts).
      const until = Date.now() + admission.waitMs;
      const patient = data.patienceMs === undefined || until <= data.created + data.patienceMs;
      if (canWait && patient && until < data.deadline) {
        metrics.rateLimitWaits.inc({ reason: 'limit' });
        p.onCalling?.();
        return { status: 'wait', waitMs: admission.waitMs };
      }
      forcedError = pauseRefusal(this.#deps.config.WORKER_PROVIDER, admission.waitMs);
    }
    this.#enter(p.via, 1);
    try {
      return await this.#deps.attempt({
        data,
        attempt,
        canRetry: p.made + base + 1 < limits.attempts,
        canWaitOnRateLimit: canWait,
        restart: p.made > 0 || data.hop > 0 || p.stalled || base > 0,
        afterCrash: p.stalled || data.lostRun !== undefined,
        speculative: p.speculative,
        keyIndex: admission.ok ? admission.keyIndex : 0,
        admission: admission.ok && admission.shared ? admission : undefined,
        forcedError,
        signal: p.signal,
        onCalling: p.onCalling,
        beforeCall: p.beforeCall,
        workerId: this.#deps.workerId,
      });
    } finally {
      this.#enter(p.via, -1);
    }
  }

  /** RPM/TPM through the shared limiter (it reads the pause too); without them, pauses as known locally. */
  async #admit(
    data: JobData,
  ): Promise<(Extract<Admission, { ok: true }> & { shared: boolean }) | Extract<Admission, { ok: false }>> {
    const { rpm, tpm } = this.#deps.limits;
    if (rpm || tpm) {
      const a = await this.#deps.limiter.acquire(tpm ? jobTokenEstimate(data) : 0);
      return a.ok ? { ...a, shared: true } : a;
    }
    const a = this.#deps.limiter.admitLocal();
    return a.ok ? { ...a, shared: false } : a;
  }

  #enter(via: Pickup['via'], n: 1 | -1): void {
    this.#busy += n;
    if (via === 'lane') this.#laneBusy += n;
    if (n > 0) this.#deps.metrics.inFlight.inc();
    else this.#deps.metrics.inFlight.dec();
    for (const f of this.#onChange) f();
  }
}
