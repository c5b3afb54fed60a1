import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { until } from '@faregate/testing/env';
import { freePort } from './stack.ts';

const run = promisify(execFile);

/** One redis-server of the cluster. */
export interface ClusterNode {
  port: number;
  /** Cluster bus port (given explicitly: port + 10000 may be past 65535 for an ephemeral port). */
  busPort: number;
  proc: ChildProcess;
}

export interface RedisCluster {
  nodes: ClusterNode[];
  /** `REDIS_CLUSTER_NODES` for the services: every node, `host:port,host:port`. */
  nodesEnv: string;
  /** Asks a node directly (a plain connection, not cluster-aware). */
  ask(port: number, ...args: string[]): Promise<unknown>;
  /** Every shard: its master's port, its replicas' ports, one of its slots (as node `asking` sees it). */
  shards(asking?: number): Promise<{ master: number; replicas: number[]; slot: number }[]>;
  /** Port of the node a client connection named `name` is connected to (CLIENT LIST), if any. */
  clientNode(name: string): Promise<number | undefined>;
  /** Port of the master serving `slot` now, and its replicas' ports (as node `asking` sees it). */
  owner(slot: number, asking?: number): Promise<{ master: number; replicas: number[] }>;
  /** A manual failover: `replica` takes over its master's slots with no write lost (CLUSTER FAILOVER). */
  failover(replica: number): Promise<void>;
  /** kill -9 of a node. */
  kill(port: number): Promise<void>;
  /** Resolves once every live node sees every slot served and the cluster state ok. */
  healthy(timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

/**
 * A real Redis Cluster on this machine: `masters` masters with `replicas` replicas each, run by the
 * Debian `redis-server` binary (installed by .ci/run) on free ports, created with
 * `redis-cli --cluster create`. AOF off, `noeviction` as BullMQ requires; a short node timeout so a
 * killed master's replica is promoted within seconds.
 */
export async function startRedisCluster(
  opts: { masters?: number; replicas?: number; nodeTimeoutMs?: number } = {},
): Promise<RedisCluster> {
  const masters = opts.masters ?? 3;
  const replicas = opts.replicas ?? 1;
  const dir = mkdtempSync(join(tmpdir(), 'fg-redis-cluster-'));
  const nodes: ClusterNode[] = [];
  const clients = new Map<number, Redis>();
  const client = (port: number): Redis => {
    let c = clients.get(port);
    if (!c) {
      c = new Redis(port, '127.0.0.1', {
        lazyConnect: true,
        maxRetriesPerRequest: 1,
        retryStrategy: () => 200,
      });
      c.on('error', () => {});
      clients.set(port, c);
    }
    return c;
  };
  const ask = (port: number, ...args: string[]) =>
    client(port).call(args[0] ?? 'PING', args.slice(1)) as Promise<unknown>;

  const stop = async () => {
    for (const c of clients.values()) c.disconnect();
    await Promise.all(
      nodes.map(async (n) => {
        if (n.proc.exitCode !== null || n.proc.signalCode !== null) return;
        n.proc.kill('SIGKILL');
        await once(n.proc, 'exit');
      }),
    );
    rmSync(dir, { recursive: true, force: true });
  };

  try {
    for (let i = 0; i < masters * (1 + replicas); i++) {
      const port = await freePort();
      let busPort = await freePort();
      while (busPort === port) busPort = await freePort();
      const proc = spawn(
        'redis-server',
        [
          '--port',
          String(port),
          '--cluster-port',
          String(busPort),
          '--bind',
          '127.0.0.1',
          '--cluster-enabled',
          'yes',
          '--cluster-config-file',
          `nodes-${port}.conf`,
          '--cluster-node-timeout',
          String(opts.nodeTimeoutMs ?? 2000),
          '--dir',
          dir,
          '--save',
          '',
          '--appendonly',
          'no',
          '--maxmemory-policy',
          'noeviction',
          '--logfile',
          `redis-${port}.log`,
        ],
        { stdio: 'ignore' },
      );
      nodes.push({ port, busPort, proc });
    }
    for (const n of nodes) {
      await until(async () => (await ask(n.port, 'PING')) === 'PONG', {
        timeoutMs: 10_000,
        what: `redis-server (cluster mode) on :${n.port}`,
      });
    }
    // The first `masters` nodes become masters; redis-cli assigns the others as their replicas.
    await run(
      'redis-cli',
      [
        '--cluster',
        'create',
        ...nodes.map((n) => `127.0.0.1:${n.port}`),
        '--cluster-replicas',
        String(replicas),
        '--cluster-yes',
      ],
      { timeout: 30_000 },
    );
  } catch (e) {
    await stop();
    throw e;
  }

  const alive = () => nodes.filter((n) => n.proc.exitCode === null && n.proc.signalCode === null);

  /** CLUSTER SHARDS as seen by one node: per shard, its master's port and its replicas' ports, and its slot ranges. */
  const shards = async (port: number) => {
    const raw = (await ask(port, 'CLUSTER', 'SHARDS')) as unknown[][];
    return raw.map((shard) => {
      const slots = shard[1] as number[];
      const members = shard[3] as unknown[][];
      const nodesOf = members.map((m) => {
        const f = new Map<string, unknown>();
        for (let i = 0; i + 1 < m.length; i += 2) f.set(String(m[i]), m[i + 1]);
        return { port: Number(f.get('port')), role: String(f.get('role')), health: String(f.get('health')) };
      });
      return { slots, nodes: nodesOf };
    });
  };

  const healthy = async (timeoutMs = 30_000) => {
    await until(
      async () => {
        for (const n of alive()) {
          const info = String(await ask(n.port, 'CLUSTER', 'INFO'));
          if (!info.includes('cluster_state:ok') || !info.includes('cluster_slots_ok:16384')) return false;
          // Every replica still running has caught up with its master (a failover loses nothing).
          const repl = String(await ask(n.port, 'INFO', 'replication'));
          if (repl.includes('role:slave') && !repl.includes('master_link_status:up')) return false;
          // …and every node sees every running node online (a replica that resynced included).
          const live = new Set(alive().map((x) => x.port));
          for (const s of await shards(n.port))
            if (s.nodes.some((x) => live.has(x.port) && x.health !== 'online')) return false;
        }
        return true;
      },
      { timeoutMs, intervalMs: 100, what: 'the Redis Cluster healthy (cluster_state:ok, replicas in sync)' },
    );
  };

  const owner = async (slot: number, asking = alive()[0]?.port) => {
    if (asking === undefined) throw new Error('no node of the cluster is running');
    for (const s of await shards(asking)) {
      for (let i = 0; i + 1 < s.slots.length; i += 2) {
        if (slot < (s.slots[i] ?? 0) || slot > (s.slots[i + 1] ?? -1)) continue;
        const master = s.nodes.find((n) => n.role === 'master' && n.health === 'online');
        if (!master) throw new Error(`slot ${slot} has no master online`);
        return {
          master: master.port,
          replicas: s.nodes.filter((n) => n.role === 'replica' && n.health === 'online').map((n) => n.port),
        };
      }
    }
    throw new Error(`slot ${slot} is not served`);
  };

  await healthy();
  return {
    nodes,
    nodesEnv: nodes.map((n) => `127.0.0.1:${n.port}`).join(','),
    ask,
    owner,
    async shards(asking = alive()[0]?.port) {
      if (asking === undefined) throw new Error('no node of the cluster is running');
      return (await shards(asking)).flatMap((s) => {
        const master = s.nodes.find((n) => n.role === 'master' && n.health === 'online');
        if (!master || s.slots.length === 0) return [];
        const replicas = s.nodes.filter((n) => n.role === 'replica' && n.health === 'online');
        return [{ master: master.port, replicas: replicas.map((n) => n.port), slot: s.slots[0] ?? 0 }];
      });
    },
    async clientNode(name) {
      for (const n of alive()) {
        const list = String(await ask(n.port, 'CLIENT', 'LIST'));
        if (list.split('\n').some((l) => l.includes(` name=${name} `))) return n.port;
      }
      return undefined;
    },
    async failover(replica) {
      await ask(replica, 'CLUSTER', 'FAILOVER');
      await until(async () => String(await ask(replica, 'ROLE')).startsWith('master'), {
        timeoutMs: 30_000,
        what: `replica :${replica} promoted`,
      });
      // Every node knows (the cluster bus spreads the new configuration within a node timeout).
      await until(
        async () => {
          for (const n of alive()) {
            const views = await shards(n.port);
            const mine = views.find((v) => v.nodes.some((x) => x.port === replica));
            if (mine?.nodes.find((x) => x.port === replica)?.role !== 'master') return false;
          }
          return true;
        },
        { timeoutMs: 30_000, intervalMs: 100, what: `every node seeing :${replica} as a master` },
      );
      // The old master, a replica now, has resynced (ready for the next fault).
      await healthy();
    },
    async kill(port) {
      const n = nodes.find((x) => x.port === port);
      if (!n || n.proc.exitCode !== null) return;
      n.proc.kill('SIGKILL');
      await once(n.proc, 'exit');
      clients.get(port)?.disconnect();
      clients.delete(port);
    },
    healthy,
    stop,
  };
}
