/**
 * Every Redis key and channel name, in one place. Per-job keys share a hash tag (`{<id>}`) so they
 * live in one Cluster slot. `prefix` isolates deployments (and test files) sharing one Redis.
 */
export interface Keys {
  prefix: string;
  /**
   * BullMQ queue name of a provider pool (BullMQ adds its own `<prefix>:` in front). The name is a
   * hash tag, so every key of the queue (BullMQ's scripts touch several) lives in one Cluster slot.
   */
  queue(provider: string): string;
  /** Per-job stream of frames; entry id `0-<seq>`, field `f` = JSON frame. */
  frames(jobId: string): string;
  /** Per-job meta hash: account, state, model, created, … */
  meta(jobId: string): string;
  /** Per-job pub/sub channel for live frames. */
  live(jobId: string): string;
  /** Usage events stream (field `e` = JSON UsageEvent), read by billing with a consumer group. */
  usage: string;
  usageGroup: string;
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
  /** A pool's circuit-breaker hash (`CircuitRecord`), shared by the pool's processes. */
  circuit(provider: string): string;
  /**
   * A pool's rate window and learned pause for provider key `i`: the limiter's script touches both,
   * so they share one hash tag.
   */
  rateWindow(provider: string, i: number): string;
  ratePause(provider: string, i: number): string;
  /** Calls of a request that produced tokens (in the request's slot, beside its frames). */
  holdCalls(requestId: string): string;
  /** A single-use stream token (by its hash): the hash of the API key it stands for. */
  streamToken(tokenHash: string): string;
  /** An ingress process's own reply channel. */
  replyChannel(instance: string): string;
  /** The record of an `Idempotency-Key` of an account (by the key's hash). */
  idempotency(accountId: string, keyHash: string): string;
  /** Where a stream's consumer puts entries it cannot parse. */
  deadLetters(stream: string): string;
}

export function makeKeys(prefix = 'fg'): Keys {
  return {
    prefix,
    queue: (provider) => `{llm-${provider}}`,
    frames: (id) => `${prefix}:{${id}}:f`,
    meta: (id) => `${prefix}:{${id}}:m`,
    live: (id) => `${prefix}:live:{${id}}`,
    usage: `${prefix}:usage`,
    usageGroup: 'billing',
    credits: `${prefix}:credits`,
    creditsGroup: 'billing',
    models: (provider) => `${prefix}:models:${provider}`,
    cancel: `${prefix}:cancel`,
    revocations: `${prefix}:revocations`,
    fast: (provider, part) => `${prefix}:{fast-${provider}}:${part}`,
    pools: `${prefix}:pools`,
    poolLimits: (provider) => `${prefix}:limits:${provider}`,
    circuit: (provider) => `${prefix}:circuit:${provider}`,
    rateWindow: (provider, i) => `${prefix}:{rate-${provider}-${i}}:window`,
    ratePause: (provider, i) => `${prefix}:{rate-${provider}-${i}}:pause`,
    holdCalls: (id) => `${prefix}:{${id}}:calls`,
    streamToken: (tokenHash) => `${prefix}:wstok:${tokenHash}`,
    replyChannel: (instance) => `${prefix}:reply:${instance}`,
    idempotency: (accountId, keyHash) => `${prefix}:idem:${accountId}:${keyHash}`,
    deadLetters: (stream) => `${stream}:dead`,
  };
}
