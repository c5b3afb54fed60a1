import type { Logger } from 'pino';
import { AggregatorRegistry } from 'prom-client';
import type { JobData } from '@faregate/contracts/jobs';
import { FastLane } from '@faregate/queue/fast-lane';
import type { LiveHub } from '@faregate/queue/live-hub';
import { createRedis, type RedisClient } from '@faregate/queue/redis';
import { providersFromEnv } from '@faregate/providers/registry';
import { loadConfig as loadPoolConfig } from '@faregate/pool/config';
import { LaneIntake } from '@faregate/pool/intake/lane';
import { createPoolRuntime, type PoolRuntime } from '@faregate/pool/runtime';
import type { IngressConfig } from './config.ts';

interface Hosted {
  runtime: PoolRuntime;
  intake: LaneIntake;
}

/**
 * The pools this ingress hosts (INGRESS_POOLS): an interactive request the fast lane would carry to a
 * worker process runs here instead, when a local slot is free. Through the lane a request crosses
 * Redis twice before its provider call (the ingress's push, the worker's pop) and its answer once
 * more on the way back; hosted, the ingress calls the provider itself. Everything else is the pool's
 * own code (packages/pool): admission under the pool's shared RPM/TPM, max-in-flight and learned
 * pauses, the circuit, the attempt with its frames, usage event and crash billing. The run is
 * recorded on the lane under this process's lease (`LaneIntake.runLocal`), so if this process dies
 * the pool's workers sweep it to BullMQ and re-run it as after a worker's death. What needs the
 * queue (a retry, a wait for a limit) goes to the pool's BullMQ queue, where its workers take it.
 */
export class LocalPools {
  readonly #pools = new Map<string, Hosted>();
  readonly #redis: RedisClient;
  readonly #sub: RedisClient;

  private constructor(redis: RedisClient, sub: RedisClient) {
    this.#redis = redis;
    this.#sub = sub;
  }

  /** Builds and starts the runtimes of `config.INGRESS_POOLS` (one not configured, no key or base URL, is left out). */
  static async start(
    config: IngressConfig,
    env: Record<string, string | undefined>,
    log: Logger,
    hub: LiveHub,
  ): Promise<LocalPools | undefined> {
    if (config.INGRESS_POOLS.length === 0) return undefined;
    const providers = providersFromEnv(env);
    const redis = createRedis(config, { name: 'fg-ingress-pools' });
    const sub = createRedis(config, { blocking: true, subscriber: true, name: 'fg-ingress-pools-sub' });
    const pools = new LocalPools(redis, sub);
    // Each pool listens for cancels on the one subscriber.
    sub.setMaxListeners(0);
    // Frames of the jobs this ingress follows reach it in process, not through Redis's pub/sub.
    const localReply = hub.replyChannel
      ? { channel: hub.replyChannel, deliver: (m: string) => hub.deliverReply(m) }
      : undefined;
    try {
      for (const id of config.INGRESS_POOLS) {
        const provider = providers.find((p) => p.id === id);
        if (!provider) {
          // As its worker would, the pool refuses to run unconfigured; the ingress serves the rest.
          log.warn(
            { pool: id },
            `INGRESS_POOLS names "${id}", which is not configured (no key or base URL): not hosted`,
          );
          continue;
        }
        // The process's slots for the pool: a local intake runs WORKER_CONCURRENCY - 1 (lane.ts).
        const poolConfig = loadPoolConfig({
          ...env,
          WORKER_PROVIDER: id,
          METRICS_PORT: '0',
          WORKER_CONCURRENCY: String(config.INGRESS_POOL_SLOTS + 1),
        });
        const poolLog = log.child({ pool: id, hosted: true });
        const runtime = await createPoolRuntime(poolConfig, provider, poolLog, env, redis, {
          hosted: true,
          localReply,
        });
        const lane = new FastLane(redis, runtime.deps.keys, id, {
          graceMs: poolConfig.FAST_LANE_GRACE_MS,
          leaseMs: poolConfig.WORKER_LOCK_MS,
        });
        const intake = new LaneIntake(runtime.deps, runtime.runner, lane, undefined);
        await runtime.start(sub);
        await intake.start();
        pools.#pools.set(id, { runtime, intake });
      }
    } catch (e) {
      await pools.stop(0);
      throw e;
    }
    return pools;
  }

  get providers(): string[] {
    return [...this.#pools.keys()];
  }

  /**
   * Runs the job here if its first hop's pool is hosted and has a free slot: true once the run is
   * recorded (the answer comes as the worker's would, on the job's frames); false to push it to the
   * lane as usual.
   */
  async run(provider: string, data: JobData): Promise<boolean> {
    const hosted = this.#pools.get(provider);
    return hosted ? hosted.intake.runLocal(data) : false;
  }

  /** The hosted pools' metrics (`faregate_worker_*`, labelled by pool), for the ingress's /metrics. */
  async metrics(): Promise<string> {
    const all = await Promise.all(
      [...this.#pools.values()].map((p) => p.runtime.deps.metrics.registry.getMetricsAsJSON()),
    );
    return all.length ? AggregatorRegistry.aggregate(all).metrics() : '';
  }

  /**
   * Stops taking jobs; waits up to `timeoutMs` for the runs in flight. Runs still going then are
   * left to their leases (the process is about to exit): the pool's workers re-run them and bill
   * their calls. Provider connections are not closed here: closing waits for requests in flight.
   */
  async stop(timeoutMs: number): Promise<void> {
    await Promise.all([...this.#pools.values()].map((p) => p.intake.stop(timeoutMs)));
    for (const p of this.#pools.values()) {
      p.runtime.stop();
      await p.runtime.deps.tracing?.shutdown().catch(() => {});
      await p.runtime.deps.circuit.flush().catch(() => {});
      await p.runtime.deps.queues.close().catch(() => {});
    }
    this.#redis.disconnect();
    this.#sub.disconnect();
  }
}
