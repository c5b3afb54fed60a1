import { setTimeout as sleep } from 'node:timers/promises';
import { CreditCommand } from '@faregate/contracts/credits';
import type { Db } from '@faregate/db/client';
import { type CreditOutcome, findCreditOutcome } from '@faregate/db/credit-commands';
import type { Keys } from '@faregate/queue/keys';
import type { RedisClient } from '@faregate/queue/redis';

/**
 * The ingress's side of a credit: it never writes money (only billing does). It queues a credit
 * command on the credits stream, which billing executes exactly once per idempotency key, and reads
 * billing's recorded outcome from Postgres.
 */

/** Validates and appends a credit command for billing. Throws a ZodError for a command billing could never apply. */
export async function queueCredit(
  redis: RedisClient,
  keys: Keys,
  cmd: { key: string; account: string; amountMicros: bigint; reference?: string | null },
): Promise<void> {
  const c = CreditCommand.parse({
    v: 1,
    key: cmd.key,
    account: cmd.account,
    amountMicros: cmd.amountMicros.toString(),
    reference: cmd.reference ?? null,
    at: Date.now(),
  });
  await redis.xadd(keys.credits, '*', 'c', JSON.stringify(c));
}

/**
 * Billing's outcome for `key`, polled read-only until it is recorded or `timeoutMs` passes
 * (undefined: billing has not applied it yet; the command stays queued). Polls often at first (billing
 * usually answers within tens of ms), then every 100 ms.
 */
export async function awaitCreditOutcome(
  db: Db,
  key: string,
  timeoutMs: number,
): Promise<CreditOutcome | undefined> {
  const deadline = Date.now() + timeoutMs;
  for (let pause = 10; ; pause = Math.min(100, Math.ceil(pause * 1.5))) {
    const o = await findCreditOutcome(db, key);
    if (o) return o;
    const left = deadline - Date.now();
    if (left <= 0) return undefined;
    await sleep(Math.min(pause, left));
  }
}
