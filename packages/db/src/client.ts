import { drizzle, type NodePgDatabase } from 'drizzle-orm/node-postgres';
import pg from 'pg';
import * as schema from './schema/index.ts';

export type Db = NodePgDatabase<typeof schema> & { $client: pg.Pool };

/**
 * A pooled connection plus the typed drizzle handle over it. Money columns are read as bigint by the
 * schema (`mode: 'bigint'`); raw SQL casts sums to text and converts explicitly.
 */
export function createDb(
  url: string,
  opts: { max?: number; idleTimeoutMs?: number; connectTimeoutMs?: number } = {},
): { db: Db; pool: pg.Pool; close(): Promise<void> } {
  const pool = new pg.Pool({
    connectionString: url,
    max: opts.max ?? 10,
    idleTimeoutMillis: opts.idleTimeoutMs ?? 10_000,
    // A server that accepts TCP but never answers must fail the query, not hang the request.
    connectionTimeoutMillis: opts.connectTimeoutMs ?? 5_000,
  });
  // An idle client losing its connection (Postgres restart) must not crash the process; the next
  // query gets a fresh connection and callers see the error there.
  pool.on('error', () => {});
  // A checked-out client (inside a transaction) has no listener of the pool's; its connection dying
  // between queries would be an uncaught 'error' event. The query in flight or the next one fails
  // with the error instead, and the caller releases the client as broken.
  pool.on('connect', (client) => {
    client.on('error', () => {});
  });
  const db = drizzle(pool, { schema });
  return { db, pool, close: () => pool.end() };
}
