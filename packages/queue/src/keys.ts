/**
 * Every Redis key and channel name, in one place. `prefix` isolates deployments (and test files)
 * sharing one Redis.
 *
 * Cluster slots: every key a script touches together shares a hash tag. A job's keys (frames, meta,
 * hold calls) and the usage stream its done frame is appended to are written by one script (the
 * done frame and its usage event are atomic: that is what makes billing exactly-once), so they share
 * the tag of the job's *usage partition*, `{u<n>}` with n = hash(job id) mod USAGE_PARTITIONS.
 * Billing reads every partition's stream. The count is part of the key layout: changing it moves
 * jobs to other streams, so drain the usage streams (billing caught up) before changing it.
 */
export const USAGE_PARTITIONS = 16;

/** A job's usage partition: FNV-1a of its id, mod USAGE_PARTITIONS (the same in every process). */
export function usagePartition(jobId: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < jobId.length; i++) {
    h ^= jobId.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) % USAGE_PARTITIONS;
}

export interface Keys {
  prefix: string;
  /**
   * BullMQ queue name of a provider pool (BullMQ adds its own `<prefix>:` in front). The name is a
   * hash tag, so every key of the queue (BullMQ's scripts touch several) lives in one Cluster slot.
   */
  queue(provider: string): string;
  /** A key of BullMQ's own layout for a pool's queue (`meta`, `active`, `wait`, …), as BullMQ names it. */
  bull(provider: string, part: string): string;
  /**
   * A pool's fast-lane runs in flight (zset: run id → lease expiry), counted with BullMQ's active
   * jobs against the pool's max-in-flight: in the queue's hash tag, beside BullMQ's keys.
   */
  laneInFlight(provider: string): string;
  /** Per-job stream of frames; entry id `0-<seq>`, field `f` = JSON frame. Tagged `{u<partition>}`. */
  frames(jobId: string): string;
  /** Per-job meta hash: account, state, model, created, … Tagged `{u<partition>}`. */
  meta(jobId: string): string;
  /** Per-job pub/sub channel for live frames. */
  live(jobId: string): string;
  /**
   * A usage partition's stream of usage events (field `e` = JSON UsageEvent), read by billing with a
   * consumer group. `usage(usagePartition(jobId))` is the stream a job's usage event goes to.
   */
  usage(partition: number): string;
  /** Every usage partition's stream (what billing reads). */
  usageStreams: readonly string[];
  usageGroup: string;
  /** Where billing's usage consumer puts events it cannot settle (one stream for all partitions). */
  usageDeadLetters: string;
  /** Credit commands stream (field `c` = JSON CreditCommand), read by billing with a consumer group. */
  credits: string;
  creditsGroup: string;
  /** Discovered models per provider (JSON). */
  models(provider: string): string;
  /** Cancel requests: pub/sub channel workers listen on. */
  cancel: string;
  /** Revoked API key ids: pub/sub channel every ingress listens on (it drops caches, closes sockets). */
  revocations: string;
  /**
   * A key of a pool's fast lane (`q`, `due`, `run`, `data`, `moving`, `alive`; see fast-lane.ts). One
   * hash tag per pool: the lane's scripts touch several keys, which must share a Cluster slot.
   */
  fast(provider: string, part: string): string;
  /** Set of live pools (each worker process adds its pool at discovery). */
  pools: string;
  /** A pool's run-time limit overrides (JSON `LimitOverrides`, written by the admin API). */
  poolLimits(provider: string): string;
  /** Limits a pool learned from its provider's headers (hash, see `parseLearnedLimits`). */
  poolLearned(provider: string): string;
  /** A pool's circuit-breaker hash (`CircuitRecord`), shared by the pool's processes. */
  circuit(provider: string): string;
  /**
   * A pool's rate window and learned pause for provider key `i`: the limiter's script touches both,
   * so they share one hash tag.
   */
  rateWindow(provider: string, i: number): string;
  ratePause(provider: string, i: number): string;
  /** Calls of a request that produced tokens (in its job's partition slot, beside its frames). */
  holdCalls(requestId: string): string;
  /** The provider calls of a request and how each ended (JSON `RouteStep` per line), beside its frames. */
  route(requestId: string): string;
  /**
   * The request-limit bucket (hash) of an API key (`keyId`) or of its whole account (no `keyId`):
   * one admission script checks both, so both carry the account's hash tag.
   */
  requestLimit(accountId: string, keyId?: string): string;
  /** A single-use stream token (by its hash): the hash of the API key it stands for. */
  streamToken(tokenHash: string): string;
  /** An admin session ended by its logout (by its signature), until the session would have expired. */
  adminSessionEnded(signature: string): string;
  /** An ingress process's own reply channel. */
  replyChannel(instance: string): string;
  /** The record of an `Idempotency-Key` sent with one API key of an account (by the header's hash). */
  idempotency(accountId: string, apiKeyId: string, keyHash: string): string;
  /** Where a stream's consumer puts entries it cannot parse. */
  deadLetters(stream: string): string;
}

export function makeKeys(prefix = 'fg'): Keys {
  const usage = (n: number) => `${prefix}:{u${n}}:usage`;
  return {
    prefix,
    queue: (provider) => `{llm-${provider}}`,
    bull: (provider, part) => `${prefix}:{llm-${provider}}:${part}`,
    laneInFlight: (provider) => `${prefix}:{llm-${provider}}:fg-lane-in-flight`,
    frames: (id) => `${prefix}:{u${usagePartition(id)}}:${id}:f`,
    meta: (id) => `${prefix}:{u${usagePartition(id)}}:${id}:m`,
    live: (id) => `${prefix}:live:{${id}}`,
    usage,
    usageStreams: Array.from({ length: USAGE_PARTITIONS }, (_, n) => usage(n)),
    usageGroup: 'billing',
    usageDeadLetters: `${prefix}:usage:dead`,
    credits: `${prefix}:credits`,
    creditsGroup: 'billing',
    models: (provider) => `${prefix}:models:${provider}`,
    cancel: `${prefix}:cancel`,
    revocations: `${prefix}:revocations`,
    fast: (provider, part) => `${prefix}:{fast-${provider}}:${part}`,
    pools: `${prefix}:pools`,
    poolLimits: (provider) => `${prefix}:limits:${provider}`,
    poolLearned: (provider) => `${prefix}:learned:${provider}`,
    circuit: (provider) => `${prefix}:circuit:${provider}`,
    rateWindow: (provider, i) => `${prefix}:{rate-${provider}-${i}}:window`,
    ratePause: (provider, i) => `${prefix}:{rate-${provider}-${i}}:pause`,
    holdCalls: (id) => `${prefix}:{u${usagePartition(id)}}:${id}:calls`,
    route: (id) => `${prefix}:{u${usagePartition(id)}}:${id}:r`,
    requestLimit: (accountId, keyId) =>
      keyId === undefined ? `${prefix}:{rl-${accountId}}:a` : `${prefix}:{rl-${accountId}}:k:${keyId}`,
    streamToken: (tokenHash) => `${prefix}:wstok:${tokenHash}`,
    adminSessionEnded: (signature) => `${prefix}:admin-session-ended:${signature}`,
    replyChannel: (instance) => `${prefix}:reply:${instance}`,
    idempotency: (accountId, apiKeyId, keyHash) => `${prefix}:idem:${accountId}:${apiKeyId}:${keyHash}`,
    deadLetters: (stream) => `${stream}:dead`,
  };
}
