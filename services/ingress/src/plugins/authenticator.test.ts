import { createAccount, createApiKey } from '@faregate/db/accounts';
import { hashApiKey } from '@faregate/db/api-keys';
import { createDb, type Db } from '@faregate/db/client';
import { runMigrations } from '@faregate/db/migrate';
import { freshDatabase } from '@faregate/testing/env';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Authenticator } from './auth.ts';

let db: Db;
let close: () => Promise<void>;
let drop: () => Promise<void>;
const closers: Authenticator[] = [];

beforeAll(async () => {
  const fresh = await freshDatabase();
  drop = fresh.drop;
  await runMigrations(fresh.url);
  ({ db, close } = createDb(fresh.url, { max: 10 }));
});
afterAll(async () => {
  for (const a of closers) a.close();
  await close?.();
  await drop?.();
});

/** The database, counting the queries made through it (`select`). */
function counted(): { db: Db; selects: () => number } {
  let n = 0;
  const proxy = new Proxy(db, {
    get(target, prop, receiver) {
      if (prop === 'select') n++;
      return Reflect.get(target, prop, receiver);
    },
  });
  return { db: proxy, selects: () => n };
}

async function newKey(): Promise<{ id: string; hash: string; accountId: string }> {
  const account = await createAccount(db, { name: 'auth-cache' });
  const key = await createApiKey(db, { accountId: account.id, name: 'k' });
  return { id: key.id, hash: hashApiKey(key.key), accountId: account.id };
}

describe('Authenticator', () => {
  it('requests arriving together with a key not cached share one database lookup', async () => {
    const key = await newKey();
    const c = counted();
    const auth = new Authenticator(c.db, 60_000);
    closers.push(auth);
    const principals = await Promise.all(Array.from({ length: 32 }, () => auth.authenticateHash(key.hash)));
    expect(c.selects()).toBe(1);
    for (const p of principals) expect(p).toMatchObject({ accountId: key.accountId, keyId: key.id });
    // Each request still gets its own principal (admission writes its limit state into it).
    expect(new Set(principals).size).toBe(32);
    await auth.authenticateHash(key.hash);
    expect(c.selects()).toBe(1);
  });

  it('a lookup under way when a key is revoked does not fill the cache', async () => {
    const key = await newKey();
    const c = counted();
    const auth = new Authenticator(c.db, 60_000);
    closers.push(auth);
    const first = auth.authenticateHash(key.hash);
    auth.revoked(key.id);
    await first;
    await auth.authenticateHash(key.hash);
    expect(c.selects()).toBe(2);
  });

  it('an unknown key is refused to every request waiting on its one lookup', async () => {
    const c = counted();
    const auth = new Authenticator(c.db, 60_000);
    closers.push(auth);
    const r = await Promise.allSettled([auth.authenticateHash('nope'), auth.authenticateHash('nope')]);
    expect(r.map((x) => x.status)).toEqual(['rejected', 'rejected']);
    expect(c.selects()).toBe(1);
  });
});
