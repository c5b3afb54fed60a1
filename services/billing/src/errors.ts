/**
 * Whether a settlement failure is worth retrying as is. Connection loss, Postgres restarting,
 * deadlocks, serialization failures and resource exhaustion pass by themselves: back off and retry
 * without acking. Anything else with a SQLSTATE (a data or constraint error) is about the batch's
 * content, so the batch is split to find the poison event.
 */
export function isTransientDbError(err: unknown): boolean {
  const code = sqlState(err);
  if (code === undefined) return true; // socket-level (ECONNREFUSED, EPIPE, …) or unknown
  return (
    code.startsWith('08') || // connection exceptions
    code.startsWith('53') || // insufficient resources
    code.startsWith('57') || // operator intervention (shutdown, cancel)
    code.startsWith('58') || // system error (I/O)
    code === '40001' || // serialization failure
    code === '40P01' || // deadlock detected
    code === '55P03' || // lock not available
    code === '25P02' // in failed transaction (the connection broke mid-way)
  );
}

/**
 * The SQLSTATE of the Postgres error behind `err`: on it, or on its causes (drizzle wraps what pg
 * throws in an error of its own, whose `cause` it is). Only an error Postgres sent counts (pg's
 * `DatabaseError` has a `severity`): a socket error's `EPIPE` is five capitals too. Read only off
 * `err`, a wrapped `bigint out of range` looked like an outage, and a credit that can never apply
 * was retried forever at the head of the queue, holding back every credit after it.
 */
export function sqlState(err: unknown): string | undefined {
  let e: unknown = err;
  for (let depth = 0; depth < 5 && typeof e === 'object' && e !== null; depth++) {
    const { code, severity, cause } = e as { code?: unknown; severity?: unknown; cause?: unknown };
    if (typeof code === 'string' && typeof severity === 'string' && /^[0-9A-Z]{5}$/.test(code)) return code;
    e = cause;
  }
  return undefined;
}
