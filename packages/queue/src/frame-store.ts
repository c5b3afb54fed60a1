import type { Redis, Result } from 'ioredis';
import type { FrameBody } from '@faregate/contracts/frames';
import type { Keys } from './keys.ts';

/**
 * The per-job frame log (Redis Stream, entry id `0-<seq>`) plus its live pub/sub channel.
 *
 * Sequence numbers are assigned inside Redis, so they have no gaps whatever process writes, and
 * writes are fenced by an owner token: each attempt `claim`s the job, and a zombie attempt (one
 * whose lock was lost after a stall) can no longer append. Terminal frames are written together
 * with the usage event and the meta state in one script: a crash can never leave "done" without
 * its usage event, or the reverse.
 */

// KEYS: frames, meta. ARGV: owner, state, ttlMs, account, model, created
// Returns { lastSeq, terminal (0 no, 1 ended, 2 cancelled before it started: caller owns the ending) }.
const CLAIM = `
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local seq = 0
local terminal = 0
if #last > 0 then
  seq = tonumber(string.match(last[1][1], '%-(%d+)$'))
  local f = last[1][2][2]
  if string.find(f, '"type":"done"', 1, true) or string.find(f, '"type":"error"', 1, true) then terminal = 1 end
end
if terminal == 0 and redis.call('HGET', KEYS[2], 'cancel') == '1' then terminal = 2 end
if terminal == 0 then
  -- The job record (owner account, model, created) may not exist yet: requests answered over HTTP
  -- are recorded here rather than by the ingress, which saves the request path a write.
  redis.call('HSET', KEYS[2], 'owner', ARGV[1], 'state', ARGV[2], 'account', ARGV[4], 'model', ARGV[5], 'created', ARGV[6])
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
end
return { seq, terminal }
`;

// KEYS: frames, meta, usage stream. ARGV: owner, channel, jobJson, ttlMs, state|'', usageJson|'', replyTo|'',
// claim ('1' claim, 'r' record only, or ''), account, model, created, frameBody...
// `replyTo` is the channel of the ingress process waiting for this job (one subscription per process).
// `claim`: an attempt that did not claim the job before calling the provider claims it with this write
// (see FrameStore.append); 'r' writes the job record without an owner (the ingress recording an async
// job with its first frame). Each frame body is a JSON object without v/job/seq; the script prefixes them.
// Returns the last seq written, or an error 'NOTOWNER' if another attempt owns the job (or it ended).
const APPEND = `
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if ARGV[1] ~= '' then
  local owner = redis.call('HGET', KEYS[2], 'owner')
  if owner ~= ARGV[1] then
    if owner or ARGV[8] ~= '1' then return redis.error_reply('NOTOWNER') end
    if #last > 0 then
      local f = last[1][2][2]
      if string.find(f, '"type":"done"', 1, true) or string.find(f, '"type":"error"', 1, true) then
        return redis.error_reply('NOTOWNER the job already ended')
      end
    end
    redis.call('HSET', KEYS[2], 'owner', ARGV[1], 'state', 'running', 'account', ARGV[9], 'model', ARGV[10], 'created', ARGV[11])
    redis.call('PEXPIRE', KEYS[2], ARGV[4])
  end
end
if ARGV[8] == 'r' then
  redis.call('HSET', KEYS[2], 'account', ARGV[9], 'model', ARGV[10], 'created', ARGV[11])
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
end
local seq = 0
if #last > 0 then seq = tonumber(string.match(last[1][1], '%-(%d+)$')) end
for i = 12, #ARGV do
  seq = seq + 1
  local f = '{"v":1,"job":' .. ARGV[3] .. ',"seq":' .. seq .. ',' .. string.sub(ARGV[i], 2)
  redis.call('XADD', KEYS[1], '0-' .. seq, 'f', f)
  redis.call('PUBLISH', ARGV[2], f)
  if ARGV[7] ~= '' then redis.call('PUBLISH', ARGV[7], f) end
end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
if ARGV[5] ~= '' then
  redis.call('HSET', KEYS[2], 'state', ARGV[5])
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
end
if ARGV[6] ~= '' then redis.call('XADD', KEYS[3], '*', 'e', ARGV[6]) end
return seq
`;

declare module 'ioredis' {
  interface RedisCommander<Context> {
    syClaim(
      frames: string,
      meta: string,
      owner: string,
      state: string,
      ttlMs: number,
      account: string,
      model: string,
      created: string,
    ): Result<[number, number], Context>;
    syAppend(
      framesKey: string,
      meta: string,
      usage: string,
      owner: string,
      channel: string,
      jobJson: string,
      ttlMs: number,
      state: string,
      usageJson: string,
      replyTo: string,
      claim: string,
      account: string,
      model: string,
      created: string,
      ...frames: string[]
    ): Result<number, Context>;
  }
}

export function defineFrameCommands(redis: Redis): void {
  if (typeof (redis as Partial<Redis>).syAppend === 'function') return;
  redis.defineCommand('syClaim', { numberOfKeys: 2, lua: CLAIM });
  redis.defineCommand('syAppend', { numberOfKeys: 3, lua: APPEND });
}

export interface AppendOptions {
  /** Fencing token of the current attempt; '' to skip the check (ingress-written frames). */
  owner: string;
  ttlMs: number;
  /** New meta state to record with these frames. */
  state?: string;
  /** A usage event to append to the usage stream atomically with these frames. */
  usage?: unknown;
  /** Also publish the frames on this channel (the waiting ingress process's own). */
  replyTo?: string;
  /**
   * Claim the job with this write if no attempt has (an attempt that called the provider without
   * claiming first): the record `claim` would have written. Refused (NOTOWNER) if the job ended.
   */
  claim?: ClaimRecord;
  /** Write the job record (no owner) with these frames: an async job recorded with its first frame. */
  record?: ClaimRecord;
}

/** The job record a claim writes (requests answered over HTTP are recorded by their first attempt). */
export interface ClaimRecord {
  account: string;
  model: string;
  created: number;
}

export class FrameStore {
  readonly redis: Redis;
  readonly keys: Keys;

  constructor(redis: Redis, keys: Keys) {
    defineFrameCommands(redis);
    this.redis = redis;
    this.keys = keys;
  }

  /** Starts an attempt: becomes the owner unless the job already ended. */
  async claim(
    jobId: string,
    owner: string,
    ttlMs: number,
    record: ClaimRecord,
  ): Promise<{ lastSeq: number; terminal: boolean; cancelled: boolean }> {
    const [lastSeq, terminal] = await this.redis.syClaim(
      this.keys.frames(jobId),
      this.keys.meta(jobId),
      owner,
      'running',
      ttlMs,
      record.account,
      record.model,
      String(record.created),
    );
    if (terminal === 2) await this.redis.hset(this.keys.meta(jobId), 'owner', owner);
    return { lastSeq: Number(lastSeq), terminal: terminal === 1, cancelled: terminal === 2 };
  }

  /** Appends frames (assigning seqs), publishes them live, optionally with state and usage. Returns the last seq. */
  async append(jobId: string, frames: FrameBody[], opts: AppendOptions): Promise<number> {
    return this.redis.syAppend(
      this.keys.frames(jobId),
      this.keys.meta(jobId),
      this.keys.usage,
      opts.owner,
      this.keys.live(jobId),
      JSON.stringify(jobId),
      opts.ttlMs,
      opts.state ?? '',
      opts.usage === undefined ? '' : JSON.stringify(opts.usage),
      opts.replyTo ?? '',
      opts.claim ? '1' : opts.record ? 'r' : '',
      (opts.claim ?? opts.record)?.account ?? '',
      (opts.claim ?? opts.record)?.model ?? '',
      String((opts.claim ?? opts.record)?.created ?? ''),
      ...frames.map((f) => JSON.stringify(f)),
    );
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
