import { describe, expect, it } from 'vitest';
import pg from 'pg';
import { drizzle } from 'drizzle-orm/node-postgres';
import { sql } from 'drizzle-orm';
import { isTransientDbError, sqlState } from './errors.ts';

const url = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

describe('isTransientDbError', () => {
  it('reads the SQLSTATE through drizzle’s wrapper: a value out of range is permanent, not an outage', async () => {
    const pool = new pg.Pool({ connectionString: url, max: 1 });
    try {
      const db = drizzle(pool);
      const err = await db.execute(sql`SELECT (9223372036854775807::bigint + 1)`).catch((e: unknown) => e);
      expect(sqlState(err)).toBe('22003');
      expect(isTransientDbError(err)).toBe(false);
      const raw = await pool.query('SELECT 1/0').catch((e: unknown) => e);
      expect(sqlState(raw)).toBe('22012');
    } finally {
      await pool.end();
    }
  });

  it('socket errors and unknown errors are transient; connection and deadlock states too', () => {
    expect(isTransientDbError(Object.assign(new Error('write EPIPE'), { code: 'EPIPE' }))).toBe(true);
    expect(isTransientDbError(new Error('boom'))).toBe(true);
    const pgErr = (code: string) => Object.assign(new Error(code), { code, severity: 'ERROR' });
    expect(isTransientDbError(pgErr('57P01'))).toBe(true);
    expect(isTransientDbError(pgErr('40P01'))).toBe(true);
    expect(isTransientDbError(new Error('wrapped', { cause: pgErr('08006') }))).toBe(true);
    expect(isTransientDbError(new Error('wrapped', { cause: pgErr('23505') }))).toBe(false);
  });
});
