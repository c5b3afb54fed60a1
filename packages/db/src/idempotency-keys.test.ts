import { freshDatabase } from '@faregate/testing/env';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDb, type Db } from './client.ts';
import { claimIdempotencyKey, expireIdempotencyKeys, releaseIdempotencyKey } from './idempotency-keys.ts';
import { runMigrations } from './migrate.ts';

let db: Db;
let close: () => Promise<void>;
let drop: () => Promise<void>;

beforeAll(async () => {
  const fresh = await freshDatabase();
  drop = fresh.drop;
  await runMigrations(fresh.url);
  ({ db, close } = createDb(fresh.url, { max: 20 }));
});
afterAll(async () => {
  await close?.();
  await drop?.();
});

const claim = (scope: string, id: string, fingerprint = 'fp', ttlMs = 60_000) =>
  claimIdempotencyKey(db, { scope, fingerprint, id, ttlMs });

describe('the ids Idempotency-Keys named', () => {
  it('the first claim names its id; later ones get it back, with its fingerprint', async () => {
    expect(await claim('k1', 'req_a')).toEqual({ id: 'req_a', fingerprint: 'fp', fresh: true });
    expect(await claim('k1', 'req_b', 'other')).toEqual({ id: 'req_a', fingerprint: 'fp', fresh: false });
  });

  it('concurrent claims of one key agree on one id', async () => {
    const got = await Promise.all(Array.from({ length: 20 }, (_, i) => claim('k2', `req_${i}`)));
    expect(new Set(got.map((g) => g.id)).size).toBe(1);
    expect(got.filter((g) => g.fresh)).toHaveLength(1);
  });

  it('an expired key is named anew, and swept', async () => {
    await claim('k3', 'req_old');
    await db.$client.query(
      "UPDATE idempotency_keys SET expires_at = now() - interval '1 second' WHERE scope = 'k3'",
    );
    expect(await claim('k3', 'req_new', 'fp2')).toEqual({ id: 'req_new', fingerprint: 'fp2', fresh: true });
    await db.$client.query(
      "UPDATE idempotency_keys SET expires_at = now() - interval '1 second' WHERE scope = 'k3'",
    );
    expect(await expireIdempotencyKeys(db)).toBeGreaterThanOrEqual(1);
    expect(await claim('k3', 'req_third')).toMatchObject({ id: 'req_third', fresh: true });
  });

  it('a release forgets the key only while it names that id', async () => {
    await claim('k4', 'req_a');
    await releaseIdempotencyKey(db, 'k4', 'req_other');
    expect(await claim('k4', 'req_b')).toMatchObject({ id: 'req_a', fresh: false });
    await releaseIdempotencyKey(db, 'k4', 'req_a');
    expect(await claim('k4', 'req_b')).toMatchObject({ id: 'req_b', fresh: true });
  });
});
