/**
 * Telling "Postgres cannot be reached or did not answer" (a 503 and a retry) from "Postgres refused
 * the query" (a bug: a 500), for every caller on a request path (admission, key lookups).
 */

/** A database call given up after the caller's own time limit. */
export class DbTimeoutError extends Error {}

/** Connection-level errno codes (Node's, and pg's for a connection it could not open or lost). */
const CONNECT_ERRNOS = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EHOSTDOWN',
  'ENETDOWN',
]);
const LOST_ERRNOS = new Set(['ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'ECONNABORTED']);
/**
 * SQLSTATEs of a server that cannot serve us now: admin/crash shutdown, cannot connect now (starting
 * up), too many connections, a statement cancelled by a timeout; class 08 is connection exceptions.
 */
const UNAVAILABLE_STATES = new Set(['57P01', '57P02', '57P03', '53300', '57014']);
/** pg's own errors for a connection that could not be opened or was lost (they carry no code). */
const LOST_MESSAGES =
  /Connection terminated|timeout exceeded when trying to connect|not queryable|Connection ended unexpectedly/i;

/** The error chain (`cause`, AggregateError's `errors`), at most a few levels deep. */
function* chain(e: unknown, depth = 0): Generator<unknown> {
  if (e === null || e === undefined || depth > 4) return;
  yield e;
  if (typeof e !== 'object') return;
  yield* chain((e as { cause?: unknown }).cause, depth + 1);
  const errors = (e as { errors?: unknown }).errors;
  if (Array.isArray(errors)) for (const x of errors) yield* chain(x, depth + 1);
}

/**
 * Whether an error says Postgres could not be reached or did not answer (worth a 503 and a retry),
 * as opposed to a query that Postgres refused (a bug: a 500). Looks through drizzle's wrapping.
 */
export function isDbUnavailable(e: unknown): boolean {
  for (const x of chain(e)) {
    if (x instanceof DbTimeoutError) return true;
    const code = (x as { code?: unknown }).code;
    if (typeof code === 'string') {
      if (CONNECT_ERRNOS.has(code) || LOST_ERRNOS.has(code)) return true;
      if (UNAVAILABLE_STATES.has(code) || /^08[0-9A-Z]{3}$/.test(code)) return true;
    }
    if (x instanceof Error && LOST_MESSAGES.test(x.message)) return true;
  }
  return false;
}

/** The connection was never opened, so the query was surely not run (nothing to undo). */
export function failedToConnect(e: unknown): boolean {
  for (const x of chain(e)) {
    const code = (x as { code?: unknown }).code;
    if (typeof code === 'string' && (CONNECT_ERRNOS.has(code) || code === '53300' || code === '57P03'))
      return true;
    if (
      x instanceof Error &&
      /timeout exceeded when trying to connect|due to connection timeout/i.test(x.message)
    )
      return true;
  }
  return false;
}

/**
 * Whether Postgres refused a value the caller sent (SQLSTATE class 22, data exception: a NUL
 * character in text, an unrepresentable number, a string past a column's length): the caller's
 * error, a 400, never a 500.
 */
export function isBadValue(e: unknown): boolean {
  for (const x of chain(e)) {
    const code = (x as { code?: unknown }).code;
    if (typeof code === 'string' && /^22[0-9A-Z]{3}$/.test(code) && 'severity' in (x as object)) return true;
  }
  return false;
}
