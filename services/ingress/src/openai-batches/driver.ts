import { and, asc, eq, inArray, lt, or } from 'drizzle-orm';
import { type IngressConfig, longestJobMs } from '../config.ts';
import { GatewayError } from '@faregate/contracts/errors';
import { parseFrame } from '@faregate/contracts/frames';
import { isFinalState, JOB_META_FIELDS } from '@faregate/contracts/job-control';
import { type JobData, jobIdForHop } from '@faregate/contracts/jobs';
import { zeroUsage } from '@faregate/contracts/chat';
import { callUsageEvent } from '@faregate/contracts/usage';
import { newId } from '@faregate/contracts/ids';
import { BatchPrincipal, type BatchOutputLine } from '@faregate/contracts/openai-batches';
import { batches } from '@faregate/db/schema/batches';
import { isDbUnavailable } from '@faregate/db/unavailable';
import { readJobStates, requestCancel } from '@faregate/queue/job-control';
import { poolBacklog } from '@faregate/queue/backlog';
import type { ProviderQueues } from '@faregate/queue/queues';
import type { Queue } from 'bullmq';
import type { Keys } from '@faregate/queue/keys';
import { type RedisClient, sendEach } from '@faregate/queue/redis';
import type pg from 'pg';
import type { IngressDeps } from '../deps.ts';
import { deleteFile, fileStore, finishFile, ownedFile, writeFile } from '../files/files.ts';
import { isStoreUnavailable } from '../files/store.ts';
import type { Principal } from '../plugins/auth.ts';
import { ACTIVE, type BatchRow, batchTail, isJobBatch, lineIds, resultFileId } from './batches.ts';
import { type LineEndpoint, lineEndpoint } from './endpoints.ts';
import { QuotaRefusal } from '../submit.ts';
import { LineReplies } from './line-replies.ts';
import { completedRaw, type EndedLine, endedWith, progressAfterStep, publishLines } from './progress.ts';
import { lineTokens, sumTokens } from './usage.ts';
import { type ValidLine, validateLines } from './validate.ts';
import { asGatewayError } from '../plugins/errors.ts';

/** BullMQ priority of batch lines: after every interactive and async job (those have none). */
export const BATCH_PRIORITY = 100;
/** A fed line with no job record after this long was lost between feeding and queueing (a crash). */
const LOST_AFTER_MS = 30_000;
/** Batches stepped per tick, oldest step first (round-robin between active batches). */
const BATCHES_PER_TICK = 16;
/** Lines of a batch whose frames arrived that start its next step at once (see LineReplies). */
const STEP_AFTER_ARRIVED = 32;
/** Lines of one batch submitted at once (each a few Redis round trips: overlap them). */
const SUBMIT_CONCURRENCY = 32;
/** Lines checked at once while recovering a batch taken over from a driver that died. */
const RECOVER_CONCURRENCY = 16;
/** Batches from this many lines refresh the planner's statistics once validated. */
const ANALYZE_FROM_LINES = 1_000;
/** Lines fed in the step that validated a batch (the rest from the next tick). */
const FIRST_FEED = 32;
/** How long batches stay held back after interactive work was last seen on a pool. */
const INTERACTIVE_HOLD_MS = 2_000;
/** The error a line's job ends with when its batch stops before the job ran. */
const notRun = (why: 'cancelled' | 'expired'): GatewayError =>
  new GatewayError({
    code: 'cancelled',
    message:
      why === 'cancelled'
        ? 'The batch was cancelled before this request ran.'
        : "The batch's completion window ended before this request ran.",
  });

/** The attempt number of the (empty, final) usage event of a line's job the driver took back. */
const TAKEN_BACK_ATTEMPT = 2_000;
/** Exit code of the test hook BATCH_TEST_EXIT_BEFORE_QUEUE (a crash between record and queue). */
export const TEST_EXIT_CODE = 86;

/**
 * Deletes a job's record only while it is still `queued` (recorded, never picked up by a worker):
 * the record of a line whose job was lost between the record and the queue, before it is fed again.
 * 1: dropped, or there was no record; 0: the job started or ended meanwhile (it was queued after
 * all, and ran: feeding it again would run it twice, as a batch line's first start does not claim).
 */
const DROP_UNQUEUED = `
local state = redis.call('HGET', KEYS[2], ARGV[1])
if state == 'queued' then
  redis.call('DEL', KEYS[1], KEYS[2])
  return 1
end
if not state and redis.call('EXISTS', KEYS[1]) == 0 then return 1 end
return 0`;

/** Drops a line's job record while still unstarted (DROP_UNQUEUED); whether it may be fed again. */
export const dropUnstarted = async (redis: RedisClient, keys: Keys, jobId: string): Promise<boolean> =>
  (await redis.eval(DROP_UNQUEUED, 2, keys.frames(jobId), keys.meta(jobId), JOB_META_FIELDS.state)) === 1;

const nowS = () => Math.floor(Date.now() / 1000);

type Ended = EndedLine;

/** A line that ended with the gateway's error: its error-file line, in OpenAI's shape. */
const failedLine = (line: number, id: string, customId: string, requestId: string, ge: GatewayError): Ended =>
  endedWith(line, 'failed', {
    id,
    custom_id: customId,
    response: { status_code: ge.status, request_id: requestId, body: ge.toBody() },
    error: null,
  });

/** A line body's model, for its job's record. */
const modelOf = (body: unknown): string => {
  const m = body && typeof body === 'object' ? (body as { model?: unknown }).model : undefined;
  return typeof m === 'string' ? m.slice(0, 200) : '';
};

const EXPIRED: BatchOutputLine['error'] = {
  code: 'batch_expired',
  message: 'This request could not be executed before the completion window expired.',
};

/** A line in flight as the driver reads it from Postgres. */
interface FedLine {
  line: number;
  job_id: string;
  custom_id: string;
  body: unknown;
}

/**
 * When a line's job must have ended: `longestJobMs` from now. With the live deadline (one request
 * timeout), a provider that accepted the call and never answered used all of it: the line failed 504
 * after 10 minutes, with no retry and no fallback. Not cut at the batch's window: the window's end is
 * the driver's to enforce (a line waiting then expires, one under way finishes), and a line whose
 * deadline were the window would fail a 429 it could wait out as expired.
 */
const lineDeadline = (config: IngressConfig): number => Date.now() + longestJobMs(config);

/**
 * A line whose job ended, from its terminal frame (raw; undefined if none was found): its output
 * line, its error-file line, or nothing (cancelled by the batch's cancel). `state` is the job's final
 * state when it was read (a frame that arrived on the reply channel has none: its frame tells).
 */
function endedLine(
  b: BatchRow,
  endpoint: LineEndpoint,
  row: FedLine,
  state: string | undefined,
  last: string | undefined,
): Ended {
  const { out } = lineIds(b.id, row.line);
  // Most lines: a chat completion, whose bytes go into the output line as they are.
  const raw = last === undefined ? undefined : endpoint.rawAnswer?.(last);
  if (raw !== undefined) return completedRaw(row.line, out, row.custom_id, row.job_id, raw);
  const f = last ? parseFrame(last) : undefined;
  // The answer as the batch's endpoint gives it (a chat completion, an embeddings list, a response).
  const answer = endpoint.answer(f, row.body);
  if (answer !== undefined)
    return endedWith(row.line, 'completed', {
      id: out,
      custom_id: row.custom_id,
      response: { status_code: 200, request_id: row.job_id, body: answer },
      error: null,
    });
  const ge = asGatewayError(
    endpoint.refusal(
      f?.type === 'error'
        ? new GatewayError(f.error)
        : new GatewayError({ code: 'internal_error', message: 'The request ended without a result.' }),
    ),
  );
  if (state === 'cancelled' || ge.code === 'cancelled') {
    // Stopped by the batch's cancel or expiry: not a failure of the request.
    if (b.status === 'cancelling') return endedWith(row.line, 'cancelled', null);
    if (nowS() >= b.expiresAt)
      return endedWith(row.line, 'expired', {
        id: out,
        custom_id: row.custom_id,
        response: null,
        error: EXPIRED,
      });
    // Its own job's cancel (`POST /v1/jobs/{id}/cancel`) while the batch runs on. A job batch's
    // member is a cancelled job, as any job. An OpenAI batch's line is a failed line in the error
    // file, counted: every line of a completed batch is in one file or the other (it was left out of
    // both, its calls still billed).
    if (isJobBatch(b.id)) return endedWith(row.line, 'cancelled', null);
    const cancelled =
      ge.code === 'cancelled'
        ? ge
        : new GatewayError({ code: 'cancelled', message: 'cancelled by the caller' });
    return failedLine(row.line, out, row.custom_id, row.job_id, cancelled);
  }
  return failedLine(row.line, out, row.custom_id, row.job_id, ge);
}

/**
 * Drives OpenAI batches from their durable state (the `batches` row and its `batch_lines`), so any
 * ingress process can take a batch over after another dies. A process steps a batch only while it
 * holds the batch's lease. A step validates a new batch, collects ended lines into their output or
 * error lines, feeds more lines as ordinary async jobs (bounded in flight per batch, at low priority),
 * and finalizes: the output and error files, then the terminal status. A line's job id is derived
 * from the batch and the line, and a line is marked fed before it is queued, so it runs once.
 */
/** How often an idle driver (no active batch it may step) looks for new batches. */
const IDLE_TICK_MS = 1_000;

const drivers = new WeakMap<IngressDeps, BatchDriver>();

/** The batch driver running on these deps (the ingress process's), if one was started. */
export const batchDriverOf = (deps: IngressDeps): BatchDriver | undefined => drivers.get(deps);

/** Tries of a batch's validation that threw for another reason than an outage, before it fails. */
const VALIDATION_ATTEMPTS = 3;

export class BatchDriver {
  readonly #deps: IngressDeps;
  readonly #pool: pg.Pool;
  readonly #owner = newId('drv', 9);
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #stopped = false;

  /** Terminal frames of the lines this process fed, as they arrive on its reply channel. */
  readonly #replies: LineReplies;

  constructor(deps: IngressDeps) {
    this.#deps = deps;
    this.#pool = deps.db.$client;
    // Enough lines of a batch ended to feed as many, or the first line of a batch just started:
    // its next step starts now, not at the next tick.
    this.#replies = new LineReplies(deps.hub, (batchId, waiting) => {
      if (waiting === STEP_AFTER_ARRIVED || this.#started.delete(batchId)) this.kick();
    });
  }

  start(): void {
    drivers.set(this.#deps, this);
    const loop = () => {
      this.#waiting = false;
      this.#kicked = false;
      if (this.#stopped) return;
      let busy = true;
      this.#running = this.tick()
        .then((n) => {
          busy = n > 0;
        })
        .catch((err: unknown) => this.#deps.log.warn({ err }, 'batch driver tick failed'))
        .finally(() => {
          // With no batch to step, look again within a second, not every tick: no query every
          // 100 ms in every ingress of a gateway that runs no batch.
          const ms = this.#kicked
            ? 0
            : busy
              ? this.#deps.config.BATCH_TICK_MS
              : Math.max(this.#deps.config.BATCH_TICK_MS, IDLE_TICK_MS);
          if (this.#stopped) return;
          this.#timer = setTimeout(loop, ms);
          this.#waiting = true;
        });
    };
    this.#loop = loop;
    loop();
  }

  #loop: (() => void) | undefined;
  /** Between ticks (a timer is set); `#kicked`: a batch was created during a tick. */
  #waiting = false;
  #kicked = false;

  /** A batch was just created here: step it now rather than at the next (maybe idle) tick. */
  kick(): void {
    if (this.#stopped || !this.#loop) return;
    if (!this.#waiting) {
      this.#kicked = true; // mid-tick: the next one starts at once
      return;
    }
    clearTimeout(this.#timer);
    this.#loop();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#running;
    await Promise.all(this.#validating.values());
    await this.#analyzing;
  }

  /** The running `ANALYZE batch_lines`, if any; `#analyzeAgain`: another was asked for meanwhile. */
  #analyzing: Promise<void> | undefined;
  #analyzeAgain = false;

  /** Refreshes the planner's statistics of `batch_lines`: one at a time (a second would wait on the first's lock). */
  #analyze(): void {
    if (this.#analyzing) {
      this.#analyzeAgain = true;
      return;
    }
    this.#analyzing = this.#pool
      .query('ANALYZE batch_lines')
      .then(
        () => {},
        (err: unknown) => this.#deps.log.warn({ err }, 'could not analyze batch_lines'),
      )
      .finally(() => {
        this.#analyzing = undefined;
        if (this.#analyzeAgain && !this.#stopped) {
          this.#analyzeAgain = false;
          this.#analyze();
        }
      });
  }

  /** Per batch, the highest line this driver fed (where the next feed's scan starts). */
  readonly #fedUpTo = new Map<string, number>();

  /** Batches started here none of whose lines has ended yet (the first one is recorded at once). */
  readonly #started = new Set<string>();

  /**
   * Batches whose last feed was refused 402 while work of the account held its balance: fed one line
   * a step (one hold tried) until a line is queued again, not a whole feed refused every step.
   */
  readonly #starved = new Set<string>();

  /** Validations running in this process (beside the ticks), by batch id. */
  readonly #validating = new Map<string, Promise<void>>();

  /** Validations that threw, by batch id: how many times, and when the next try may start. */
  readonly #validationFailures = new Map<string, { count: number; retryAt: number }>();

  /** Until when batches feed only `BATCH_INTERACTIVE_IN_FLIGHT` lines each (interactive work seen). */
  #yieldUntil = 0;

  /**
   * Looks at every live pool for interactive work: requests on its fast lane (waiting or running:
   * batch lines never take the lane) or unprioritized jobs waiting (interactive async jobs; batch
   * lines are prioritized). Seen: batches yield for the next INTERACTIVE_HOLD_MS.
   */
  async #sampleInteractive(): Promise<void> {
    const pools = this.#deps.directory.providers;
    const backlogs = await Promise.all(pools.map((p) => poolBacklog(this.#deps.redis, this.#deps.keys, p)));
    if (backlogs.some((b) => b.lane + b.waiting > 0)) this.#yieldUntil = Date.now() + INTERACTIVE_HOLD_MS;
  }

  /** Lines a batch may have in flight now. */
  #inFlightCap(): number {
    const { BATCH_MAX_IN_FLIGHT, BATCH_INTERACTIVE_IN_FLIGHT } = this.#deps.config;
    return Date.now() < this.#yieldUntil
      ? Math.min(BATCH_MAX_IN_FLIGHT, BATCH_INTERACTIVE_IN_FLIGHT)
      : BATCH_MAX_IN_FLIGHT;
  }

  /** One round: steps each active batch this process can hold, least recently stepped first; how many it found. */
  async tick(): Promise<number> {
    const now = Date.now();
    const due = await this.#deps.db
      .select({ id: batches.id, leaseOwner: batches.leaseOwner })
      .from(batches)
      .where(
        and(
          inArray(batches.status, [...ACTIVE]),
          or(lt(batches.leaseUntil, now), eq(batches.leaseOwner, this.#owner)),
        ),
      )
      .orderBy(asc(batches.steppedAt))
      .limit(BATCHES_PER_TICK);
    if (due.length > 0)
      await this.#sampleInteractive().catch((err: unknown) =>
        this.#deps.log.warn({ err }, 'batch driver could not read the pools backlog'),
      );
    // Batches are stepped side by side (each under its own lease): one batch's Redis and Postgres
    // round trips overlap another's, and no batch waits for another's feed to be collected.
    this.#replies.dropIdle();
    await Promise.all(
      due.map(async ({ id, leaseOwner }) => {
        if (this.#stopped) return;
        const b = await this.#claim(id);
        if (!b) {
          this.#replies.drop(id);
          return;
        }
        // Held by another driver until its lease lapsed: that driver died (or stalled) mid-step.
        // What this process knew of its lines in flight is stale (the other one fed some).
        if (leaseOwner !== null && leaseOwner !== this.#owner) {
          this.#replies.drop(id);
          await this.#recover(b);
        }
        await this.step(b);
        await progressAfterStep(this.#deps, b);
      }),
    );
    return due.length;
  }

  async #claim(id: string): Promise<BatchRow | undefined> {
    const now = Date.now();
    const [b] = await this.#deps.db
      .update(batches)
      .set({ leaseOwner: this.#owner, leaseUntil: now + this.#deps.config.BATCH_LEASE_MS, steppedAt: now })
      .where(
        and(
          eq(batches.id, id),
          inArray(batches.status, [...ACTIVE]),
          or(lt(batches.leaseUntil, now), eq(batches.leaseOwner, this.#owner)),
        ),
      )
      .returning();
    return b;
  }

  /** Keeps the lease through a long step (validation of a large file). */
  async #renew(id: string): Promise<void> {
    await this.#deps.db
      .update(batches)
      .set({ leaseUntil: Date.now() + this.#deps.config.BATCH_LEASE_MS })
      .where(and(eq(batches.id, id), eq(batches.leaseOwner, this.#owner)));
  }

  async step(b: BatchRow): Promise<void> {
    // Being validated here (or just started, its first lines being fed): that run steps it.
    if (this.#validating.has(b.id)) return;
    if (b.status === 'validating') {
      // A validation that threw waits out its backoff (a tick is tens of milliseconds).
      if ((this.#validationFailures.get(b.id)?.retryAt ?? 0) > Date.now()) return;
      // Validation (seconds for a large file) runs beside the ticks, so the other batches go on
      // being stepped meanwhile; the lease is renewed while it runs. Once validated and started,
      // its first lines are fed at once (a few: queued at once, collected by the next tick).
      const run = this.#validate(b)
        .then((started) => {
          if (!started) return;
          this.#started.add(b.id);
          return this.#feed(started, Math.min(FIRST_FEED, this.#inFlightCap())).then(() => {
            // The planner knows nothing of a new batch's lines until the next autoanalyze, and
            // misjudges the queries that read and record lines by a batch's lines in flight
            // (nested loops over every line of the batch). Statistics now, but after the first lines
            // are queued (the feed's pick does not depend on them): ~0.1-0.4 s, off that path.
            if (started.total >= ANALYZE_FROM_LINES) this.#analyze();
          });
        })
        .then(() => {
          this.#validationFailures.delete(b.id);
          return progressAfterStep(this.#deps, b);
        })
        .catch((err: unknown) => this.#validationFailed(b, err))
        .finally(() => {
          this.#validating.delete(b.id);
          this.kick();
        });
      this.#validating.set(b.id, run);
      return;
    }
    if (b.status === 'finalizing') return this.#finalize(b, b.finalStatus ?? 'completed');
    if (b.status === 'cancelling' || nowS() >= b.expiresAt) {
      const why = b.status === 'cancelling' ? 'cancelled' : 'expired';
      const open = await this.#collect(b);
      await this.#stopLines(b, open, why);
      // Only lines whose provider call is under way are waited for: the others end now.
      const underWay = await this.#takeBack(b, open, why);
      if (underWay === 0) await this.#finalize(b, why);
      return;
    }
    // The lines whose frames arrived, most steps; every line in flight read, the others.
    const open = (await this.#collectArrived(b)) ?? (await this.#collect(b)).length;
    const fed = await this.#feed(b, this.#inFlightCap() - open);
    if (open === 0 && fed === 0 && !(await this.#hasPending(b.id))) await this.#finalize(b, 'completed');
  }

  /**
   * A validation threw. Postgres or the file store away: tried again with backoff (1 s doubling to a
   * minute) for as long as it takes. Anything else is not the file's fault and will not pass on
   * another try (before a depth limit, a deeply nested line overflowed the stack every tick,
   * forever): after VALIDATION_ATTEMPTS the batch fails, saying so, and nothing of it runs.
   */
  async #validationFailed(b: BatchRow, err: unknown): Promise<void> {
    const f = this.#validationFailures.get(b.id) ?? { count: 0, retryAt: 0 };
    f.count++;
    const transient = isDbUnavailable(err) || isStoreUnavailable(err);
    this.#deps.log.warn({ err, batch: b.id, attempt: f.count, transient }, 'batch validation failed');
    if (transient || f.count < VALIDATION_ATTEMPTS) {
      f.retryAt = Date.now() + Math.min(60_000, 1_000 * 2 ** Math.min(f.count - 1, 6));
      this.#validationFailures.set(b.id, f);
      return;
    }
    this.#validationFailures.delete(b.id);
    await this.#deps.db
      .update(batches)
      .set({
        status: 'failed',
        failedAt: nowS(),
        errors: [
          {
            code: 'internal_error',
            message: `The gateway could not validate the input file ${b.inputFileId} (an internal error, logged); no request of it was run.`,
            param: 'input_file_id',
            line: null,
          },
        ],
      })
      .where(and(eq(batches.id, b.id), eq(batches.status, 'validating')))
      .catch((e: unknown) => this.#deps.log.warn({ err: e, batch: b.id }, 'could not fail the batch'));
  }

  /** Validates a new batch; the batch as started (`in_progress`), or undefined (failed, cancelled). */
  async #validate(b: BatchRow): Promise<BatchRow | undefined> {
    const client = await this.#pool.connect();
    try {
      await client.query('BEGIN');
      // A validation cut short by a crash starts over.
      this.#fedUpTo.delete(b.id);
      await client.query('DELETE FROM batch_lines WHERE batch_id = $1', [b.id]);
      let stored = 0;
      // A group's INSERT runs while the next group is parsed (one INSERT outstanding at most:
      // memory stays a group or two, and Postgres works beside this process, not after it).
      let inserting: Promise<unknown> = Promise.resolve();
      const emit = async (lines: ValidLine[]) => {
        await inserting;
        inserting = client.query(
          `INSERT INTO batch_lines (batch_id, line, custom_id, body, state)
           SELECT $1, l, c, b::jsonb, 'pending' FROM unnest($2::int[], $3::text[], $4::text[]) AS t(l, c, b)`,
          [b.id, lines.map((l) => l.line), lines.map((l) => l.customId), lines.map((l) => l.body)],
        );
        // Not left unobserved should it fail before the next group awaits it.
        inserting.catch(() => {});
        stored += lines.length;
        if (stored % 5000 < lines.length) await this.#renew(b.id);
      };
      const file = await ownedFile(this.#deps, b.accountId, b.inputFileId);
      const { total, errors, model } = file
        ? await validateLines(fileStore(this.#deps).get(file.id), b.endpoint, emit, {
            maxLineBytes: this.#deps.config.BODY_LIMIT_BYTES,
          }).then(async (v) => {
            await inserting;
            // Deleted while read (a file's row goes before its content: deleteFile): what was read
            // may be only part of it, and the batch must not run a part as if it were the whole.
            if (await ownedFile(this.#deps, b.accountId, b.inputFileId)) return v;
            return {
              total: 0,
              model: null,
              errors: [
                {
                  code: 'invalid_file',
                  message: `The input file ${b.inputFileId} was deleted while the batch was validating it.`,
                  param: 'input_file_id',
                  line: null,
                },
              ],
            };
          })
        : {
            total: 0,
            model: null,
            errors: [
              {
                code: 'invalid_file',
                message: `The input file ${b.inputFileId} no longer exists.`,
                param: 'input_file_id',
                line: null,
              },
            ],
          };
      const now = nowS();
      if (errors.length > 0 || total === 0) {
        await client.query('ROLLBACK');
        await this.#deps.db
          .update(batches)
          .set({
            status: 'failed',
            failedAt: now,
            errors:
              errors.length > 0
                ? errors
                : [
                    {
                      code: 'empty_file',
                      message: 'The input file has no requests.',
                      param: null,
                      line: null,
                    },
                  ],
          })
          .where(and(eq(batches.id, b.id), eq(batches.status, 'validating')));
        return undefined;
      }
      // A batch cancelled while it was being validated is cancelled, not started. Its model (the
      // batch object's `model`) is known from here on.
      const r = await client.query(
        `UPDATE batches SET status = 'in_progress', in_progress_at = $2, total = $3, model = $4
         WHERE id = $1 AND status = 'validating'`,
        [b.id, now, total, model],
      );
      await client.query(r.rowCount === 1 ? 'COMMIT' : 'ROLLBACK');
      return r.rowCount === 1 ? { ...b, status: 'in_progress', inProgressAt: now, total, model } : undefined;
    } catch (e) {
      await client.query('ROLLBACK').catch(() => {});
      throw e;
    } finally {
      client.release();
    }
  }

  /**
   * Taking over a batch from a driver that died: its lines fed (`submitted`) whose job was recorded
   * (`queued`) or not even that, but never queued on BullMQ, were lost between feeding and queueing.
   * Their record is dropped (only while still `queued`) and they go back to `pending`: the next feed
   * submits them again under the same job id. Safe both ways: a job found on its queue is left
   * alone, and should a lost job turn up after all, BullMQ refuses a second job with its id and a
   * worker that picks up an ended job finds its terminal frame and stops, so a line runs and is billed once.
   */
  async #recover(b: BatchRow): Promise<void> {
    if (b.status !== 'in_progress' && b.status !== 'cancelling') return;
    const fed = await this.#pool.query<{ line: number; job_id: string; body: unknown }>(
      `SELECT line, job_id, body FROM batch_lines WHERE batch_id = $1 AND state = 'submitted'`,
      [b.id],
    );
    if (fed.rows.length === 0) return;
    const deps = this.#deps;
    const states = await readJobStates(
      deps.redis,
      deps.keys,
      fed.rows.map((r) => r.job_id),
    );
    const unstarted = fed.rows.filter((_, i) => states[i] === undefined || states[i] === 'queued');
    const lost: { line: number; job: string }[] = [];
    let next = 0;
    const work = async () => {
      for (let i = next++; i < unstarted.length; i = next++) {
        const row = unstarted[i];
        if (row && !(await this.#queued(b.endpoint, row.job_id, row.body)))
          lost.push({ line: row.line, job: row.job_id });
      }
    };
    await Promise.all(Array.from({ length: Math.min(RECOVER_CONCURRENCY, unstarted.length) }, work));
    if (lost.length === 0) return;
    // Only lines whose job is still unstarted go back: one that ended between the read of its state
    // and the look at its queue (its BullMQ job is removed on completion) is collected as ended.
    const dropped = await Promise.all(lost.map((l) => dropUnstarted(deps.redis, deps.keys, l.job)));
    const again = lost.filter((_, i) => dropped[i]);
    if (again.length === 0) return;
    await this.#pool.query(
      `UPDATE batch_lines SET state = 'pending' WHERE batch_id = $1 AND line = ANY($2::int[]) AND state = 'submitted'`,
      [b.id, again.map((l) => l.line)],
    );
    deps.log.warn(
      { batch: b.id, lines: again.length },
      'batch lines lost before their job was queued: fed again',
    );
  }

  /** Whether a line's job is on a queue of its route (any candidate: its first hop's id). */
  async #queued(endpoint: string, jobId: string, body: unknown): Promise<boolean> {
    let providers: string[];
    try {
      providers = lineEndpoint(endpoint).providers(this.#deps, body);
    } catch {
      return false; // no route (anymore): it cannot have been queued; feeding it again fails it properly
    }
    const id = jobIdForHop(jobId, 0);
    for (const p of providers) if (await this.#deps.queues.get(p).getJob(id)) return true;
    return false;
  }

  /**
   * Records the lines whose terminal frame arrived on this process's reply channel (LineReplies);
   * how many lines are still open, or undefined when the batch needs a full collect (`#collect`):
   * one is due, or no line would be left open (a batch is only ever concluded from a full one).
   */
  async #collectArrived(b: BatchRow): Promise<number | undefined> {
    if (isJobBatch(b.id)) return undefined; // its members' jobs reply to no one: read every step
    const arrived = this.#replies.take(b.id);
    if (!arrived) return undefined;
    if (arrived.size > 0) {
      const endpoint = lineEndpoint(b.endpoint);
      const raw = new Map([...arrived].map(([job, a]) => [job, a.raw]));
      // Only lines still `submitted`: one a full collect already recorded is left alone.
      const rows = await this.#pool.query<FedLine>(
        `SELECT line, job_id, custom_id, CASE WHEN $3 THEN body END AS body
         FROM batch_lines WHERE batch_id = $1 AND line = ANY($2::int[]) AND state = 'submitted'`,
        [b.id, [...arrived.values()].map((a) => a.line), endpoint.answerNeedsBody],
      );
      await this.#record(
        b.id,
        rows.rows.map((row) => endedLine(b, endpoint, row, undefined, raw.get(row.job_id))),
      );
    }
    const open = this.#replies.openCount(b.id);
    return open > 0 ? open : undefined;
  }

  /** Records the lines whose job ended; returns the job ids of those still open. */
  async #collect(b: BatchRow): Promise<{ line: number; job: string }[]> {
    const endpoint = lineEndpoint(b.endpoint);
    const fed = await this.#pool.query<{
      line: number;
      job_id: string;
      custom_id: string;
      submitted_at: string;
      body: unknown;
    }>(
      `SELECT line, job_id, custom_id, submitted_at, CASE WHEN $2 THEN body END AS body
       FROM batch_lines WHERE batch_id = $1 AND state = 'submitted'`,
      [b.id, endpoint.answerNeedsBody],
    );
    if (fed.rows.length === 0) {
      this.#replies.swept(b.id, []);
      return [];
    }
    const deps = this.#deps;
    // Two round trips for every line in flight, whatever their number: each job's state, then
    // the last (terminal) frame of those that ended.
    const states = await readJobStates(
      deps.redis,
      deps.keys,
      fed.rows.map((r) => r.job_id),
    );
    const finals = fed.rows.filter((_, i) => {
      const st = states[i];
      return st !== undefined && isFinalState(st);
    });
    const frames = await sendEach(
      deps.redis,
      finals.map((r) => ['xrevrange', deps.keys.frames(r.job_id), '+', '-', 'COUNT', 1] as const),
    );
    const lastFrame = new Map<string, string | undefined>();
    finals.forEach((r, i) => {
      lastFrame.set(r.job_id, (frames[i] as [string, string[]][] | undefined)?.[0]?.[1][1]);
    });
    const ended: Ended[] = [];
    const open: { line: number; job: string }[] = [];
    const lost: number[] = [];
    fed.rows.forEach((row, i) => {
      const state = states[i];
      if (!state || !isFinalState(state)) {
        if (!state && Date.now() - Number(row.submitted_at) > LOST_AFTER_MS) lost.push(row.line);
        else open.push({ line: row.line, job: row.job_id });
        return;
      }
      ended.push(endedLine(b, endpoint, row, state, lastFrame.get(row.job_id)));
    });
    if (lost.length > 0) {
      // Fed, then the process died before the job was recorded: feed them again (same job ids).
      await this.#pool.query(
        `UPDATE batch_lines SET state = 'pending' WHERE batch_id = $1 AND line = ANY($2::int[]) AND state = 'submitted'`,
        [b.id, lost],
      );
    }
    await this.#record(b.id, ended);
    if (!isJobBatch(b.id)) this.#replies.swept(b.id, open);
    return open;
  }

  /**
   * Ends lines with their results and counts them, in one transaction (only lines still open): a
   * line is counted once, and the tokens of its answer (the batch's `usage`) are added with its count.
   */
  async #record(batchId: string, ended: Ended[]): Promise<void> {
    if (ended.length === 0) return;
    await publishLines(this.#deps, batchId, ended);
    const client = await this.#pool.connect();
    try {
      await client.query('BEGIN');
      // The batch's row first, then its lines, as the feed's pick takes them (the other order could
      // deadlock with a pick of another driver stepping the batch after a lapsed lease).
      await client.query('SELECT 1 FROM batches WHERE id = $1 FOR NO KEY UPDATE', [batchId]);
      // One JSON document of the lines and their result lines, as they are (a text[] of them would
      // be escaped character by character by the driver, and each element parsed again). A completed
      // line's answer's `usage` comes back from the lines this UPDATE ended, and only those (one
      // streaming pass over its result line in Postgres; the answer is not parsed here).
      const r = await client.query<{ state: string; usage: unknown }>(
        `UPDATE batch_lines l SET state = t.s, result = t.r, body = NULL
         FROM json_to_recordset($2::json) AS t(n int, s text, r json)
         WHERE l.batch_id = $1 AND l.line = t.n AND l.state IN ('submitted', 'pending')
         RETURNING l.state,
           CASE WHEN t.s = 'completed' THEN json_extract_path(t.r, 'response', 'body', 'usage') END AS usage`,
        [
          batchId,
          `[${ended.map((e) => `{"n":${e.line},"s":"${e.state}","r":${e.json ?? 'null'}}`).join(',')}]`,
        ],
      );
      const done = r.rows.filter((x) => x.state === 'completed');
      const completed = done.length;
      const failed = r.rows.filter((x) => x.state === 'failed').length;
      const t = sumTokens(done.map((x) => lineTokens(x.usage)));
      if (completed + failed > 0)
        await client.query(
          `UPDATE batches SET completed = completed + $2, failed = failed + $3,
             input_tokens = input_tokens + $4, cached_tokens = cached_tokens + $5,
             output_tokens = output_tokens + $6, reasoning_tokens = reasoning_tokens + $7,
             total_tokens = total_tokens + $8
           WHERE id = $1`,
          [batchId, completed, failed, t.input, t.cached, t.output, t.reasoning, t.total],
        );
      await client.query('COMMIT');
    } catch (e) {
      await client.query('ROLLBACK').catch(() => {});
      throw e;
    } finally {
      client.release();
    }
    await this.#forgetJobs(batchId, ended);
  }

  /**
   * Once lines are recorded in Postgres (never fed again), their jobs' records in Redis (frames and
   * meta, ~7 KB a line) need live only as long as a live request's (SYNC_TTL_SECONDS: a worker that
   * picks up a stale copy still finds the terminal frame), not the day async jobs keep: Redis then
   * holds minutes of lines, not every line of every batch of the day. A job batch's members are
   * jobs their callers look up: kept.
   */
  async #forgetJobs(batchId: string, ended: Ended[]): Promise<void> {
    if (isJobBatch(batchId)) return;
    const { keys, redis, config } = this.#deps;
    const ms = config.SYNC_TTL_SECONDS * 1000;
    await sendEach(
      redis,
      ended.flatMap((e) => {
        const { job } = lineIds(batchId, e.line);
        return [['pexpire', keys.frames(job), ms] as const, ['pexpire', keys.meta(job), ms] as const];
      }),
    ).catch((err: unknown) => this.#deps.log.warn({ err, batch: batchId }, 'could not shorten line records'));
  }

  /** Feeds up to `room` pending lines as async jobs; how many it queued or ended. */
  async #feed(b: BatchRow, room: number): Promise<number> {
    if (this.#starved.has(b.id)) room = Math.min(room, 1);
    if (room <= 0) return 0;
    const { job: prefix } = lineIds(b.id, 0);
    const jobPrefix = prefix.slice(0, -1);
    // Lines are fed in order: start past the last line this driver fed, so the index scan does not
    // walk every line fed before (their old `pending` versions linger until vacuum). Lines put back
    // to pending below it (a retry, a crash) are picked by the scan from the start, run when the
    // scan past the mark finds too few (a batch never finalizes with a pending line).
    // The lines are picked by index and updated by their row address (a TID scan), a plan that
    // needs no statistics: a new batch's first feed runs before its lines were analyzed, and
    // `line IN (…)` planned on stale statistics is a nested loop over every pending line (0.7 s
    // for 64 lines of a 25,000-line batch). `FOR UPDATE` keeps the rows as picked until updated.
    // Only while the batch is `in_progress`, read under a share lock of its row: a cancel's update
    // waits for a pick under way and then reads what it fed (`refuseStarts`); a pick waiting for a
    // cancel finds it cancelling and feeds nothing.
    const pick = (after: number, n: number) =>
      this.#pool.query<{ line: number; custom_id: string; body: unknown }>(
        `UPDATE batch_lines SET state = 'submitted', job_id = $2 || line, submitted_at = $3
         WHERE ctid = ANY(ARRAY(
           SELECT ctid FROM batch_lines WHERE batch_id = $1 AND state = 'pending' AND line > $5
             AND EXISTS (SELECT 1 FROM batches WHERE id = $1 AND status = 'in_progress' FOR SHARE)
           ORDER BY line LIMIT $4 FOR UPDATE
         ))
         RETURNING line, custom_id, body`,
        [b.id, jobPrefix, Date.now(), n, after],
      );
    // Line numbers start at 1 (a file's lines) or 0 (a job batch's indexes): -1 is before any.
    const mark = this.#fedUpTo.get(b.id) ?? -1;
    const picked = await pick(mark, room);
    if (mark >= 0 && picked.rows.length < room)
      picked.rows.push(...(await pick(-1, room - picked.rows.length)).rows);
    for (const r of picked.rows)
      if (r.line > (this.#fedUpTo.get(b.id) ?? -1)) this.#fedUpTo.set(b.id, r.line);
    if (picked.rows.length === 0) return 0;
    const parsed = BatchPrincipal.safeParse(b.principal);
    const principal: Principal | undefined = parsed.success ? { ...parsed.data } : undefined;
    // The key that created the batch is checked as each group of lines is fed: once it is revoked,
    // no more lines run on it (they end in the error file).
    const key = await this.#pool.query<{ revoked: boolean }>('SELECT revoked FROM api_keys WHERE id = $1', [
      b.keyId,
    ]);
    const revoked = key.rows[0]?.revoked !== false;
    const ended: Ended[] = [];
    const retry: number[] = [];
    let next = 0;
    const rows = picked.rows.sort((x, y) => x.line - y.line);
    // A line refused 402 (the balance, or the key's spend limit) only because of what other work
    // holds (this batch's lines in flight, a line that ended but is not settled yet, the account's
    // other requests) waits: that work settles at what it cost, usually far below its worst case.
    // The lines after it wait too. The refusal itself says so (`QuotaRefusal.held`, decided under
    // the account's lock): read afterwards, a hold settled in between looked like no hold, and the
    // line failed when it would have run. Short on the balance alone, the line fails.
    let queued = 0;
    let waiting = false;
    const deps = this.#deps.config.BATCH_TEST_EXIT_BEFORE_QUEUE > 0 ? this.#exitingDeps() : this.#deps;
    const endpoint = lineEndpoint(b.endpoint);
    // An OpenAI batch line's job streams no deltas (its output line is the done frame); a job batch's
    // members are jobs their callers follow, deltas and all.
    const mode = isJobBatch(b.id) ? 'async' : 'batch';
    const fail = async (row: (typeof rows)[number], ge: GatewayError) => {
      const { job, out } = lineIds(b.id, row.line);
      ended.push(failedLine(row.line, out, row.custom_id, job, ge));
      // The line's job ends failed too, as any job would: its record and terminal frame (a job
      // batch's member is looked up and followed as a job).
      await this.#deps.store
        .append(job, [{ type: 'error', status: ge.status, error: ge.toJSON() }], {
          owner: '',
          ttlMs: this.#deps.config.STREAM_TTL_SECONDS * 1000,
          state: 'failed',
          record: { account: b.accountId, model: modelOf(row.body), created: Date.now() },
        })
        .catch((err: unknown) => this.#deps.log.warn({ err, job }, 'could not record a failed batch line'));
    };
    const work = async () => {
      for (let i = next++; i < rows.length; i = next++) {
        const row = rows[i];
        if (!row) continue;
        if (waiting) {
          retry.push(row.line);
          continue;
        }
        const { job } = lineIds(b.id, row.line);
        try {
          if (revoked)
            throw new GatewayError({
              code: 'invalid_api_key',
              message: 'The API key that created this batch was revoked.',
            });
          if (!principal)
            throw new GatewayError({ code: 'internal_error', message: 'batch has no principal' });
          // Its terminal frame comes on this process's reply channel: listened for before it is queued.
          if (mode === 'batch') this.#replies.watch(b.id, job, row.line);
          // Validated as the endpoint's door validates it, then queued as its job.
          await endpoint.submit(deps, { ...principal }, row.body, mode, {
            id: job,
            priority: BATCH_PRIORITY,
            deadline: lineDeadline(this.#deps.config),
          });
          queued++;
        } catch (e) {
          this.#replies.unwatch(b.id, job);
          const ge = asGatewayError(endpoint.refusal(e));
          if (ge.retryable || ge.retryAfterMs !== undefined || ge.status === 503) {
            // The gateway's own pressure (rate limits, a pool not up yet): fed again on a later step.
            // A 429 that waiting cannot lift (a line larger than the key's tokens limit) fails the line.
            retry.push(row.line);
          } else if (e instanceof QuotaRefusal && e.held) {
            waiting = true;
            retry.push(row.line);
          } else await fail(row, ge);
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(SUBMIT_CONCURRENCY, rows.length) }, work));
    if (waiting) this.#starved.add(b.id);
    else if (queued > 0) this.#starved.delete(b.id);
    if (retry.length > 0)
      await this.#pool.query(
        `UPDATE batch_lines SET state = 'pending' WHERE batch_id = $1 AND line = ANY($2::int[]) AND state = 'submitted'`,
        [b.id, retry],
      );
    await this.#record(b.id, ended);
    return rows.length - retry.length;
  }

  #queuedByHook = 0;

  /**
   * Test hook (BATCH_TEST_EXIT_BEFORE_QUEUE=n, off by default): the process exits, as if killed, when
   * its driver is about to queue its n-th line's job, after the line was fed and its job recorded.
   */
  #exitingDeps(): IngressDeps {
    const queues = this.#deps.queues;
    const at = this.#deps.config.BATCH_TEST_EXIT_BEFORE_QUEUE;
    const add: ProviderQueues['add'] = (data, attempts, opts) => {
      if (++this.#queuedByHook >= at) process.exit(TEST_EXIT_CODE);
      return queues.add(data, attempts, opts);
    };
    const wrapped = new Proxy(queues, {
      get: (t, p) => {
        if (p === 'add') return add;
        const v: unknown = Reflect.get(t, p, t);
        return typeof v === 'function' ? v.bind(t) : v;
      },
    });
    return { ...this.#deps, queues: wrapped };
  }

  async #hasPending(batchId: string): Promise<boolean> {
    const r = await this.#pool.query(
      `SELECT 1 FROM batch_lines WHERE batch_id = $1 AND state IN ('pending', 'submitted') LIMIT 1`,
      [batchId],
    );
    return (r.rowCount ?? 0) > 0;
  }

  /**
   * Cancel or expiry: lines not fed end at once; open ones are asked to stop. A line whose provider
   * call is under way finishes, as OpenAI's and Anthropic's cancels let it (only a new attempt is
   * refused): its answer goes into the output file. Stopped mid-call, the provider's work would be
   * thrown away (no line shows it, and an aborted call reports no usage to bill, though the provider
   * charges for it). Its job's deadline bounds how long `cancelling` lasts, or how long an expired
   * batch waits before it is finalized.
   */
  async #stopLines(b: BatchRow, open: { job: string }[], why: 'cancelled' | 'expired'): Promise<void> {
    const ttlMs = this.#deps.config.STREAM_TTL_SECONDS * 1000;
    if (isJobBatch(b.id)) {
      // A job batch's members are jobs someone may follow: those never fed end as cancelled jobs.
      const r = await this.#pool.query<{ line: number; model: string | null }>(
        `SELECT line, body->>'model' AS model FROM batch_lines WHERE batch_id = $1 AND state = 'pending'`,
        [b.id],
      );
      const error = notRun(why);
      await Promise.all(
        r.rows.map((row) =>
          this.#deps.store.append(
            lineIds(b.id, row.line).job,
            [{ type: 'error', status: error.status, error: error.toJSON() }],
            {
              owner: '',
              ttlMs,
              state: 'cancelled',
              record: { account: b.accountId, model: row.model ?? '', created: Date.now() },
            },
          ),
        ),
      );
    }
    if (why === 'cancelled') {
      await this.#pool.query(
        `UPDATE batch_lines SET state = 'cancelled', body = NULL WHERE batch_id = $1 AND state = 'pending'`,
        [b.id],
      );
    } else {
      await this.#pool.query(
        `UPDATE batch_lines SET state = 'expired', body = NULL,
           result = ('{"id":' || to_json('batch_req_' || $2 || '_' || line)::text
                     || ',"custom_id":' || to_json(custom_id)::text || ',"response":null,"error":' || $3 || '}')::json
         WHERE batch_id = $1 AND state = 'pending'`,
        [b.id, batchTail(b.id), JSON.stringify(EXPIRED)],
      );
    }
    await Promise.all(
      open.map((o) => requestCancel(this.#deps.redis, this.#deps.keys, o.job, ttlMs, { unstarted: true })),
    );
  }

  /**
   * A stopping batch's (cancel, expiry) open lines whose job has no provider call under way end now,
   * not when their job would next start: a job waiting on its queue (a pool's rate-limit pause, a
   * 429's retry-after that may be hours, a retry's backoff, its turn) is taken off the queue, so it
   * never calls the provider, and ended cancelled with a final usage event of no tokens (its budget
   * hold goes back; it made no call, it costs nothing). Under way is what BullMQ's job lock says: a
   * worker holds the job (an attempt runs: its call is in flight, or starting within its admission),
   * and BullMQ refuses to remove a locked job, atomically. The job record's state cannot say it: a
   * batch line's first call is made before its record is claimed (`queued` through the call), and a
   * claimed job sent back to wait by a 429 still reads `running`. Returns how many lines are under way.
   */
  async #takeBack(
    b: BatchRow,
    open: { line: number; job: string }[],
    why: 'cancelled' | 'expired',
  ): Promise<number> {
    if (open.length === 0) return 0;
    const endpoint = lineEndpoint(b.endpoint);
    const rows = await this.#pool.query<{ line: number; job_id: string; custom_id: string; body: unknown }>(
      `SELECT line, job_id, custom_id, body FROM batch_lines
       WHERE batch_id = $1 AND line = ANY($2::int[]) AND state = 'submitted'`,
      [b.id, open.map((o) => o.line)],
    );
    const ended: Ended[] = [];
    let underWay = open.length - rows.rows.length; // recorded meanwhile: the next collect tells
    let next = 0;
    const work = async () => {
      for (let i = next++; i < rows.rows.length; i = next++) {
        const row = rows.rows[i];
        if (!row) continue;
        const taken = await this.#takeLineBack(b, endpoint, row, why).catch((err: unknown) => {
          this.#deps.log.warn({ err, batch: b.id, job: row.job_id }, 'could not take a batch line back');
          return false;
        });
        if (!taken) {
          underWay++;
          continue;
        }
        const { out } = lineIds(b.id, row.line);
        ended.push(
          why === 'cancelled'
            ? endedWith(row.line, 'cancelled', null)
            : endedWith(row.line, 'expired', {
                id: out,
                custom_id: row.custom_id,
                response: null,
                error: EXPIRED,
              }),
        );
      }
    };
    await Promise.all(Array.from({ length: Math.min(RECOVER_CONCURRENCY, rows.rows.length) }, work));
    await this.#record(b.id, ended);
    return underWay;
  }

  /**
   * Takes one line's job off its queue and ends it, unless a worker holds it (under way) or it
   * ended meanwhile; whether it was ended here. Its hops are looked for last first (a fallback queues
   * the next hop while the worker still holds the one before).
   */
  async #takeLineBack(
    b: BatchRow,
    endpoint: LineEndpoint,
    row: { line: number; job_id: string; body: unknown },
    why: 'cancelled' | 'expired',
  ): Promise<boolean> {
    const deps = this.#deps;
    let hops: string[];
    try {
      hops = endpoint.hops(deps, row.body);
    } catch {
      hops = [];
    }
    // The route's providers hop by hop, then every pool (a route that changed since the line was fed).
    const pools = deps.directory.providers;
    const found: { data: JobData; queue: Queue<JobData>; id: string }[] = [];
    for (let h = Math.max(hops.length, 1) - 1; h >= 0; h--) {
      const id = jobIdForHop(row.job_id, h);
      const hop = hops[h];
      for (const p of hop ? [hop, ...pools.filter((x) => x !== hop)] : pools) {
        const queue = deps.queues.get(p);
        const job = await queue.getJob(id);
        if (job) {
          found.push({ data: job.data, queue, id });
          break;
        }
      }
    }
    // BullMQ removes a job only while no worker holds it (0: locked, an attempt runs).
    for (const f of found) if ((await f.queue.remove(f.id)) !== 1) return false;
    // On no queue anymore: nothing can start it. Its end is claimed first (the batch's cancel flag,
    // set by #stopLines, hands the claimer the ending), so a job that ended meanwhile is left as it
    // ended and collected by the next step.
    const owner = `${this.#owner}:stop`;
    const ttlMs = deps.config.STREAM_TTL_SECONDS * 1000;
    const model = modelOf(row.body);
    const claim = await deps.store.claim(row.job_id, owner, ttlMs, {
      account: b.accountId,
      model,
      created: Date.now(),
    });
    if (claim.terminal) return false;
    const data = found[0]?.data;
    const candidate = data?.plan[data.hop];
    const error = notRun(why);
    const usage = callUsageEvent(
      {
        job: data ?? { id: row.job_id, account: b.accountId, key: b.keyId },
        hop: data?.hop ?? 0,
        attempt: TAKEN_BACK_ATTEMPT,
        provider: candidate?.provider ?? hops[0] ?? 'unknown',
        model: candidate?.model ?? model,
      },
      zeroUsage(),
      'cancelled',
      { final: true, estimated: false, at: Date.now() },
    );
    await deps.store.append(row.job_id, [{ type: 'error', status: error.status, error: error.toJSON() }], {
      owner,
      ttlMs,
      state: 'cancelled',
      usage,
    });
    return true;
  }

  /**
   * Writes the output file (completed lines) and the error file (failed and expired lines), in line
   * order and streamed, then ends the batch. Starting over after a crash rewrites both files.
   */
  async #finalize(b: BatchRow, final: string): Promise<void> {
    this.#fedUpTo.delete(b.id);
    this.#started.delete(b.id);
    this.#starved.delete(b.id);
    this.#replies.drop(b.id);
    const now = nowS();
    // A cancelled batch writes its files while it reads `cancelling`, as OpenAI's goes from
    // cancelling to cancelled (a crash meanwhile: the cancelling step finalizes again).
    const through = final === 'cancelled' && b.status === 'cancelling' ? 'cancelling' : 'finalizing';
    if (b.status !== through) {
      const [f] = await this.#deps.db
        .update(batches)
        .set({ status: 'finalizing', finalStatus: final, finalizingAt: now })
        .where(and(eq(batches.id, b.id), eq(batches.status, b.status)))
        .returning();
      if (!f) return; // changed meanwhile (a cancel): the next step sees it
    }
    // A job batch's results are its jobs': no result files.
    const jobs = isJobBatch(b.id);
    const output = jobs ? null : await this.#writeResults(b, 'output', `state = 'completed'`);
    const error = jobs
      ? null
      : await this.#writeResults(b, 'error', `state IN ('failed', 'expired') AND result IS NOT NULL`);
    const at =
      final === 'cancelled'
        ? { cancelledAt: now }
        : final === 'expired'
          ? { expiredAt: now }
          : { completedAt: now };
    await this.#deps.db
      .update(batches)
      .set({
        status: final,
        outputFileId: output,
        errorFileId: error,
        leaseOwner: null,
        leaseUntil: 0,
        ...at,
      })
      .where(and(eq(batches.id, b.id), eq(batches.status, through)));
  }

  async #writeResults(b: BatchRow, kind: 'output' | 'error', where: string): Promise<string | null> {
    const id = resultFileId(b.id, kind);
    // A step run again (after a crash) writes the file again from the start.
    await deleteFile(this.#deps, id);
    let bytes = 0;
    let lines = 0;
    const pool = this.#pool;
    const renew = () => this.#renew(b.id);
    async function* results(): AsyncIterable<Buffer> {
      let after = 0;
      for (;;) {
        // Each line's text as it was recorded (not parsed and serialized again).
        const r = await pool.query<{ line: number; result: string }>(
          `SELECT line, result::text AS result FROM batch_lines
           WHERE batch_id = $1 AND line > $2 AND ${where} ORDER BY line LIMIT 1000`,
          [b.id, after],
        );
        if (r.rows.length === 0) return;
        const text = r.rows.map((x) => `${x.result}\n`).join('');
        const buf = Buffer.from(text);
        bytes += buf.length;
        lines += r.rows.length;
        after = r.rows.at(-1)?.line ?? after;
        await renew();
        yield buf;
      }
    }
    const file = { id, accountId: b.accountId, purpose: 'batch_output', filename: `${b.id}_${kind}.jsonl` };
    await writeFile(this.#deps, file, results());
    if (lines === 0) {
      await deleteFile(this.#deps, id);
      return null;
    }
    await finishFile(this.#deps, id, { bytes, lines }, b.outputExpiresAfter ?? undefined);
    return id;
  }
}
