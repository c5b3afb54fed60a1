import type { Db } from './client.ts';

/** What a key names: the id its first request was given, and that request's body fingerprint. */
export interface ClaimedKey {
  id: string;
  fingerprint: string;
  /** True when this call named it (`id` is the one offered); false: an earlier request with the key did. */
  fresh: boolean;
}

/**
 * Names `id` for an `Idempotency-Key` (`scope`), unless a request within the key's TTL already named
 * another: then that one is returned (`fresh: false`), with its fingerprint. One round trip when the
 * key is new (every keyed request but a retry whose Redis record was lost). A row past its expiry is
 * taken over, as Redis's record would have expired.
 */
export async function claimIdempotencyKey(
  db: Db,
  opts: { scope: string; fingerprint: string; id: string; ttlMs: number },
): Promise<ClaimedKey> {
  for (;;) {
    const named = await db.$client.query<{ resource_id: string; fingerprint: string }>(
      `INSERT INTO idempotency_keys AS k (scope, fingerprint, resource_id, expires_at)
       VALUES ($1, $2, $3, now() + $4::double precision * interval '1 millisecond')
       ON CONFLICT (scope) DO UPDATE
         SET fingerprint = EXCLUDED.fingerprint, resource_id = EXCLUDED.resource_id,
             expires_at = EXCLUDED.expires_at, created_at = now()
         WHERE k.expires_at <= now()
       RETURNING resource_id, fingerprint`,
      [opts.scope, opts.fingerprint, opts.id, opts.ttlMs],
    );
    if (named.rows[0]) return { id: opts.id, fingerprint: opts.fingerprint, fresh: true };
    // Named already (and not expired). Read in a statement of its own: the insert's snapshot may
    // predate a concurrent claim it waited for.
    const kept = await db.$client.query<{ resource_id: string; fingerprint: string }>(
      'SELECT resource_id, fingerprint FROM idempotency_keys WHERE scope = $1 AND expires_at > now()',
      [opts.scope],
    );
    const row = kept.rows[0];
    if (row) return { id: row.resource_id, fingerprint: row.fingerprint, fresh: false };
    // Released or expired in between: claim it again.
  }
}

/** Forgets what `scope` named, if it still names `id`: a request refused before it ran keeps nothing. */
export async function releaseIdempotencyKey(db: Db, scope: string, id: string): Promise<void> {
  await db.$client.query('DELETE FROM idempotency_keys WHERE scope = $1 AND resource_id = $2', [scope, id]);
}

/** Drops expired keys (billing's sweep): a row past its expiry answers nothing already. */
export async function expireIdempotencyKeys(db: Db): Promise<number> {
  const r = await db.$client.query('DELETE FROM idempotency_keys WHERE expires_at <= now()');
  return r.rowCount ?? 0;
}
