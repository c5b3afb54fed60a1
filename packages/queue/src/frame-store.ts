import type { RedisClient } from './redis.ts';
import { type FrameBody, isTerminal } from '@faregate/contracts/frames';
import { GatewayError } from '@faregate/contracts/errors';
import { type Keys, usagePartition } from './keys.ts';
import { luaScript } from './lua.ts';

/**
 * The per-job frame log (Redis Stream, entry id `0-<seq>`) plus its live pub/sub channel.
 *
 * Sequence numbers are assigned inside Redis, so they have no gaps whatever process writes, and
 * writes are fenced by an owner token: each attempt `claim`s the job, and a zombie attempt (one
 * whose lock was lost after a stall) can no longer append. Terminal frames are written together
 * with the usage event and the meta state in one script: a crash can never leave "done" without
 * its usage event, or the reverse.
 */

const claimScript = luaScript<{
  keys: [frames: string, meta: string];
  args: [
    owner: string,
    state: string,
    ttlMs: number,
    account: string,
    model: string,
    created: string,
    contentFinal: '1' | '',
  ];
  result: [lastSeq: number, terminal: 0 | 1 | 2 | 3 | 4, previousOwner: string | null, ended: string | null];
}>(new URL('./frame-store.claim.lua', import.meta.url), { numberOfKeys: 2 });

const moveScript = luaScript<{
  keys: [meta: string];
  args: [hop: number, ttlMs: number];
  result: 0 | 1;
}>(new URL('./frame-store.move.lua', import.meta.url), { numberOfKeys: 1 });

/**
 * Frames, state and usage event in one script, which is what makes billing exactly-once: a crash
 * cannot leave a "done" without its usage event, or the reverse.
 *
 * Cluster-safe: the job's keys and the usage stream its event goes to share the tag of the job's
 * usage partition (`keys.ts`, `usagePartition`), so the script's keys live in one slot and it stays
 * one atomic step. Billing reads every partition's stream.
 */
const appendScript = luaScript<{
  keys: [frames: string, meta: string, holdCalls: string, usage: string];
  args: [
    owner: string,
    channel: string,
    jobJson: string,
    ttlMs: number,
    state: string,
    usageJson: string,
    replyTo: string,
    claim: '1' | 'r' | '',
    account: string,
    model: string,
    created: string,
    callLine: string,
    callKeepMs: number,
    ends: '1' | '',
    expectedLast: string,
    ...frames: string[],
  ];
  result: number;
}>(new URL('./frame-store.append.lua', import.meta.url), { numberOfKeys: 4 });

/** Whether everything written to the connection has left this process (a Cluster: not known). */
export function handedToKernel(redis: RedisClient): boolean {
  if (redis.status !== 'ready') return false;
  const stream = (redis as { stream?: { writableLength?: unknown } }).stream;
  return stream?.writableLength === 0;
}

export interface AppendOptions {
  /** Fencing token of the current attempt; '' to skip the check (ingress-written frames). */
  owner: string;
  ttlMs: number;
  /** New meta state to record with these frames. */
  state?: string;
  /** A usage event to append to the usage stream atomically with these frames. */
  usage?: unknown;
  /**
   * A provider call that produced tokens, counted against the request's hold (`keys.holdCalls`) in
   * the same script as the usage event: the count and the bill never disagree. Kept `keepMs`.
   */
  call?: { line: string; keepMs: number };
  /** Also publish the frames on this channel (the waiting ingress process's own). */
  replyTo?: string;
  /**
   * Claim the job with this write if no attempt has (an attempt that called the provider without
   * claiming first): the record `claim` would have written. Refused (NOTOWNER) if the job ended.
   */
  claim?: ClaimRecord;
  /** Write the job record (no owner) with these frames: an async job recorded with its first frame. */
  record?: ClaimRecord;
  /**
   * This write ends the owner's attempt (one with a state or a usage event does anyway): a later
   * claim then knows it did not die mid-call (`claim`'s `unended`).
   */
  ends?: boolean;
  /**
   * The log as the attempt writing it knows it (see LogCursor): frames for this process's own
   * reply channel are handed over as soon as their write has left for Redis.
   */
  cursor?: LogCursor;
}

/**
 * A job's log as seen by the one attempt that has written all of it from its start: a pool hosted
 * by an ingress running a request submitted to that same ingress (the log is empty when such a run
 * starts, and its writes are fenced). Its frames reach the caller waiting in this process as soon
 * as their write has left for Redis, numbered from `last`, rather than once Redis has answered: one
 * Redis round trip less before the answer or a streamed chunk (Redis runs the write whatever this
 * process does next: a crash after the hand-over is a crash after the write). The write checks the
 * numbering (the log ends at `last`), and is refused, writing nothing, if the log does not: that
 * attempt is no longer the job's (as NOTOWNER). Should a write fail after its frames were handed
 * over, the caller is ended at once with an error (unless the frames ended it), so that nothing
 * this process then writes or relays is numbered against frames the log does not have; later
 * writes go as without a cursor (`broken`).
 */
export interface LogCursor {
  last: number;
  broken: boolean;
}

/** A fresh cursor for an attempt that starts a job's log (see LogCursor). */
export const newLogCursor = (): LogCursor => ({ last: 0, broken: false });

/** What a caller handed frames whose write then failed is told (LogCursor). */
const UNRECORDED = new GatewayError({
  code: 'upstream_error',
  message: 'The answer could not be recorded, so it ends here incomplete. Retry the request.',
});

/** The job record a claim writes (requests answered over HTTP are recorded by their first attempt). */
export interface ClaimRecord {
  account: string;
  model: string;
  created: number;
}

/**
 * A frame's JSON with `type` first: the store's scripts read a frame's type right after its seq
 * (`frame-store.claim.lua`), not by searching the whole frame (an embeddings list is megabytes).
 */
function frameBody(f: FrameBody): string {
  const json = JSON.stringify(f);
  if (json.startsWith('{"type":')) return json;
  const { type, ...rest } = f;
  return JSON.stringify({ type, ...rest });
}

/**
 * The reply channel of the process a store writes from, and how frames reach its listeners there
 * without Redis (LiveHub.deliverReply): a pool hosted by an ingress writes the frames of jobs
 * submitted to that same ingress.
 */
export interface LocalReply {
  channel: string;
  deliver(message: string): void;
}

export class FrameStore {
  readonly redis: RedisClient;
  readonly keys: Keys;
  readonly #localReply: LocalReply | undefined;

  constructor(redis: RedisClient, keys: Keys, localReply?: LocalReply) {
    this.redis = redis;
    this.keys = keys;
    this.#localReply = localReply;
  }

  /**
   * Starts an attempt: becomes the owner unless the job already ended. `cancelled`: the caller
   * cancelled it before it started. `streamedBy`: the job's content is final (`contentFinal`) and an
   * earlier attempt, owned by this, already streamed some (a worker that died mid-stream): the
   * caller has that content, so this attempt must end the job instead of calling again.
   * `unended`: the attempt that owned the job before this one never ended (its worker died, or
   * stalled and is fenced now): its provider call was made and never billed (attempt.ts bills it).
   * `previous`: the owner before this one, if any. `superseded`: the job went on to a later hop of its
   * route than this attempt's (the hop in the owner, `<worker>:<hop>:<attempt>`): this copy of the job
   * must not run (see `moved`).
   */
  async claim(
    jobId: string,
    owner: string,
    ttlMs: number,
    record: ClaimRecord,
    contentFinal = false,
  ): Promise<{
    lastSeq: number;
    terminal: boolean;
    cancelled: boolean;
    streamedBy?: string;
    unended?: string;
    previous?: string;
    superseded?: true;
  }> {
    const [lastSeq, terminal, previous, ended] = await claimScript(
      this.redis,
      [this.keys.frames(jobId), this.keys.meta(jobId)],
      [
        owner,
        'running',
        ttlMs,
        record.account,
        record.model,
        String(record.created),
        contentFinal ? '1' : '',
      ],
    );
    if (terminal === 2) await this.redis.hset(this.keys.meta(jobId), 'owner', owner);
    return {
      lastSeq: Number(lastSeq),
      terminal: terminal === 1,
      ...(terminal === 4 ? { superseded: true as const } : {}),
      cancelled: terminal === 2,
      ...(terminal === 3 ? { streamedBy: previous ?? '' } : {}),
      ...(terminal === 0 && previous && previous !== ended && previous !== owner
        ? { unended: previous }
        : {}),
      ...(previous ? { previous } : {}),
    };
  }

  /**
   * Marks that the job's run went on to `hop` of its route (moved off a pool that has no live
   * worker): a copy of the job at an earlier hop is refused at its claim (`superseded`).
   */
  async moved(jobId: string, hop: number, ttlMs: number): Promise<void> {
    await moveScript(this.redis, [this.keys.meta(jobId)], [hop, ttlMs]);
  }

  /**
   * Appends frames (assigning seqs), publishes them live, optionally with state and usage. Returns the
   * last seq. Frames for this process's own reply channel (`localReply`) are handed to it instead of
   * through Redis (`#deliver`): once written, or, with a `cursor`, once their write has left.
   */
  async append(jobId: string, frames: FrameBody[], opts: AppendOptions): Promise<number> {
    const record = opts.claim ?? opts.record;
    const local =
      opts.replyTo !== undefined && opts.replyTo === this.#localReply?.channel ? this.#localReply : undefined;
    const cursor = local && opts.cursor && !opts.cursor.broken ? opts.cursor : undefined;
    const bodies = frames.map(frameBody);
    const written = appendScript(
      this.redis,
      [
        this.keys.frames(jobId),
        this.keys.meta(jobId),
        this.keys.holdCalls(jobId),
        this.keys.usage(usagePartition(jobId)),
      ],
      [
        opts.owner,
        this.keys.live(jobId),
        JSON.stringify(jobId),
        opts.ttlMs,
        opts.state ?? '',
        opts.usage === undefined ? '' : JSON.stringify(opts.usage),
        local ? '' : (opts.replyTo ?? ''),
        opts.claim ? '1' : opts.record ? 'r' : '',
        record?.account ?? '',
        record?.model ?? '',
        String(record?.created ?? ''),
        opts.call?.line ?? '',
        opts.call?.keepMs ?? 0,
        opts.ends ? '1' : '',
        cursor ? String(cursor.last) : '',
        ...bodies,
      ],
    );
    if (local && cursor && bodies.length > 0 && handedToKernel(this.redis)) {
      cursor.last += bodies.length;
      // Handed over before Redis answers (LogCursor): numbered as the write numbers them.
      this.#deliver(local, jobId, cursor.last, bodies);
      try {
        return await written;
      } catch (e) {
        cursor.broken = true;
        if (!frames.some(isTerminal)) {
          const end = frameBody({ type: 'error', status: UNRECORDED.status, error: UNRECORDED.toJSON() });
          this.#deliver(local, jobId, cursor.last + 1, [end]);
        }
        throw e;
      }
    }
    let last: number;
    try {
      last = await written;
    } catch (e) {
      if (cursor) cursor.broken = true;
      throw e;
    }
    if (cursor) cursor.last = last;
    if (local) this.#deliver(local, jobId, last, bodies);
    return last;
  }

  /**
   * Hands frames to this process's own listeners (`localReply`) as the script would have published
   * them (whole even past the size the script publishes only as a notice: in process there is no
   * subscriber buffer to overflow), the last numbered `last`.
   */
  #deliver(local: LocalReply, jobId: string, last: number, bodies: string[]): void {
    // The script's message: `{"v":1,"job":<id>,"seq":<n>,` and the body after its `{`.
    const head = `{"v":1,"job":${JSON.stringify(jobId)},"seq":`;
    let seq = last - bodies.length;
    // The frames are written whatever a listener does with them: its failure is not the write's.
    for (const b of bodies) {
      try {
        local.deliver(`${head}${++seq},${b.slice(1)}`);
      } catch {}
    }
  }

  /** The attempt that owns (or last owned) the job (`<worker>:<hop>:<attempt>`), if any claimed it. */
  async owner(jobId: string): Promise<string | undefined> {
    return (await this.redis.hget(this.keys.meta(jobId), 'owner')) ?? undefined;
  }

  /** Frames after `afterSeq`, in order (raw JSON strings). */
  async read(jobId: string, afterSeq: number, count = 1000): Promise<string[]> {
    const entries = await this.redis.xrange(
      this.keys.frames(jobId),
      `0-${afterSeq + 1}`,
      '+',
      'COUNT',
      count,
    );
    return entries.map(([, fields]) => fields[1] ?? '');
  }

  /** The last frame, if any (raw JSON). */
  async last(jobId: string): Promise<string | undefined> {
    const entries = await this.redis.xrevrange(this.keys.frames(jobId), '+', '-', 'COUNT', 1);
    return entries[0]?.[1][1];
  }
}

/**
 * A live message that stands for a frame too large to publish (frame-store.append.lua): the frame
 * is in the stream, at the notice's seq. No frame body has a `stored` field.
 */
export const isStoredNotice = (raw: string): boolean => raw.endsWith(',"stored":true}');

/** `"seq":N` is always the third field of a frame we wrote; parse it without a full JSON.parse. */
export function seqOf(raw: string): number {
  const i = raw.indexOf('"seq":');
  if (i < 0) return 0;
  let n = 0;
  for (let j = i + 6; j < raw.length; j++) {
    const c = raw.charCodeAt(j) - 48;
    if (c < 0 || c > 9) break;
    n = n * 10 + c;
  }
  return n;
}
