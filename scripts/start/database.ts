import { createRequire } from 'node:module';

// scripts/ is no workspace package: borrow the db package's own `pg` (the tests use it too).
export const pg = createRequire(new URL('../../packages/db/package.json', import.meta.url))(
  'pg',
) as typeof import('pg');

const INVALID_CATALOG_NAME = '3D000';
const DUPLICATE_DATABASE = '42P04';

const code = (e: unknown): string | undefined =>
  typeof e === 'object' && e !== null && 'code' in e ? String((e as { code: unknown }).code) : undefined;

/** `postgres://user:secret@host/db` → `postgres://user:***@host/db`, for messages. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(unparseable URL)';
  }
}

async function connect(url: string): Promise<import('pg').Client> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 });
  client.on('error', () => {});
  await client.connect();
  return client;
}

/**
 * Makes sure the database named in `url` exists, creating it through the server's `postgres`
 * database when it does not. Returns true when it was created.
 */
export async function ensureDatabase(url: string): Promise<boolean> {
  try {
    const client = await connect(url);
    await client.end();
    return false;
  } catch (e) {
    if (code(e) !== INVALID_CATALOG_NAME) throw e;
  }
  const target = new URL(url);
  const name = decodeURIComponent(target.pathname.slice(1));
  const admin = new URL(url);
  admin.pathname = '/postgres';
  const client = await connect(admin.toString());
  try {
    await client.query(`CREATE DATABASE ${client.escapeIdentifier(name)}`);
    return true;
  } catch (e) {
    // Another process created it in the meantime: fine.
    if (code(e) === DUPLICATE_DATABASE) return false;
    throw e;
  } finally {
    await client.end();
  }
}
