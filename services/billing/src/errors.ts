/**
 * Whether a settlement failure is worth retrying as is. Connection loss, Postgres restarting,
 * deadlocks, serialization failures and resource exhaustion pass by themselves: back off and retry
 * without acking. Anything else with a SQLSTATE (a data or constraint error) is about the batch's
 * content, so the batch is split to find the poison event.
 */
export function isTransientDbError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code !== 'string' || !/^[0-9A-Z]{5}$/.test(code)) return true; // socket-level (ECONNREFUSED, …) or unknown
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
