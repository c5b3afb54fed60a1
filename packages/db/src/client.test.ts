import { freshDatabase, until } from '@faregate/testing/env';
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createDb } from './client.ts';

let database: Awaited<ReturnType<typeof freshDatabase>>;
beforeAll(async () => {
  database = await freshDatabase();
});
afterAll(async () => {
  await database?.drop();
});

it('a checked-out connection killed between queries fails the next query instead of crashing the process', async () => {
  const { pool, close } = createDb(database.url, { max: 2 });
  const uncaught: unknown[] = [];
  const onUncaught = (e: unknown) => uncaught.push(e);
  process.on('uncaughtException', onUncaught);
  try {
    const client = await pool.connect();
    const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
    const ended = new Promise<void>((resolve) => client.once('end', () => resolve()));
    const admin = new pg.Client({ connectionString: database.url });
    await admin.connect();
    await admin.query('SELECT pg_terminate_backend($1)', [rows[0]!.pid]);
    await admin.end();
    await ended;
    await expect(client.query('SELECT 1')).rejects.toThrow();
    client.release(true);
    // The pool still serves queries on a fresh connection.
    const again = await until(
      async () => (await pool.query<{ one: number }>('SELECT 1 AS one')).rows[0]?.one,
    );
    expect(again).toBe(1);
    expect(uncaught).toEqual([]);
  } finally {
    process.off('uncaughtException', onUncaught);
    await close();
  }
});
