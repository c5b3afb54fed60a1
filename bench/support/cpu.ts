import { readFileSync } from 'node:fs';
import { Redis } from 'ioredis';
import pg from 'pg';

/** Kernel clock ticks per second for /proc CPU times (100 on every mainstream Linux). */
const CLK_TCK = 100;

/** CPU time (user + system, ms) of one process, from /proc; undefined where there is no /proc. */
export function processCpuMs(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name, which may itself contain spaces and parentheses.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(f[11]) + Number(f[12])) * 1000) / CLK_TCK;
  } catch {
    return undefined;
  }
}

/** Redis server CPU time (user + system, ms) from INFO, to count Redis in the per-request cost. */
export async function redisCpuMs(redis: Redis): Promise<number | undefined> {
  const info = await redis.info('cpu');
  const num = (k: string) => Number(new RegExp(`^${k}:([\\d.]+)`, 'm').exec(info)?.[1]);
  const ms = (num('used_cpu_user') + num('used_cpu_sys')) * 1000;
  return Number.isFinite(ms) ? ms : undefined;
}

export interface CpuMeter {
  /** Starts a measurement window. */
  mark(): Promise<void>;
  /** CPU ms used per process since mark(), keyed by name (plus `redis`, `postgres` and `bench-client`). */
  read(): Promise<Record<string, number>>;
  close(): void;
}

/**
 * Measures the CPU each process of a stack spends in a window, plus Redis (the whole server), the
 * Postgres backends serving the stack's database (when `databaseUrl` is given), and this process.
 */
export function cpuMeter(
  services: readonly { name: string; pid: number }[],
  redisUrl: string,
  databaseUrl?: string,
): CpuMeter {
  const redis = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 });
  const sql = databaseUrl ? new pg.Pool({ connectionString: databaseUrl, max: 1 }) : undefined;
  let base: Record<string, number> = {};
  let backends: number[] = [];
  const now = async (): Promise<Record<string, number>> => {
    const out: Record<string, number> = {};
    for (const s of services) {
      const v = processCpuMs(s.pid);
      if (v !== undefined) out[s.name] = v;
    }
    const r = await redisCpuMs(redis).catch(() => undefined);
    if (r !== undefined) out.redis = r;
    // Per backend, so a connection opened mid-window counts from zero and one closed is dropped.
    for (const pid of backends) {
      const v = processCpuMs(pid);
      if (v !== undefined) out[`postgres#${pid}`] = v;
    }
    const self = process.cpuUsage();
    out['bench-client'] = (self.user + self.system) / 1000;
    return out;
  };
  const listBackends = async () => {
    if (!sql) return;
    const r = await sql.query<{ pid: number }>(
      'SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()',
    );
    backends = r.rows.map((x) => x.pid);
  };
  return {
    mark: async () => {
      await listBackends().catch(() => {});
      base = await now();
    },
    read: async () => {
      const cur = await now();
      const out: Record<string, number> = {};
      for (const [k, v] of Object.entries(cur)) {
        const key = k.startsWith('postgres#') ? 'postgres' : k;
        out[key] = (out[key] ?? 0) + v - (base[k] ?? 0);
      }
      return out;
    },
    close: () => {
      redis.disconnect();
      void sql?.end();
    },
  };
}
