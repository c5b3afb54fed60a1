/** Levels of pino's JSON lines, as printed. */
const LEVELS: Record<number, string> = {
  10: 'TRACE',
  20: 'DEBUG',
  30: 'INFO',
  40: 'WARN',
  50: 'ERROR',
  60: 'FATAL',
};

/** Fields every line carries that the prefix or the layout already shows. */
const DROPPED = new Set(['level', 'time', 'msg', 'pid', 'hostname', 'svc']);

export interface Rendered {
  /** One or more lines (an error's stack follows its message). */
  lines: string[];
  /** pino level number, when the line was a pino record. */
  level?: number;
}

/**
 * Turns one of pino's JSON lines into `12:00:01.123 INFO  message {other fields}`, keeping every field
 * except the ones the prefix already says. Anything that is not a pino record passes through as is.
 */
export function renderLine(line: string): Rendered {
  if (!line.startsWith('{')) return { lines: [line] };
  let rec: unknown;
  try {
    rec = JSON.parse(line);
  } catch {
    return { lines: [line] };
  }
  if (typeof rec !== 'object' || rec === null || typeof (rec as { level?: unknown }).level !== 'number') {
    return { lines: [line] };
  }
  const r = rec as Record<string, unknown> & { level: number };
  const time = typeof r.time === 'number' ? new Date(r.time).toISOString().slice(11, 23) : '';
  const level = (LEVELS[r.level] ?? String(r.level)).padEnd(5);
  const rest: Record<string, unknown> = {};
  let stack: string | undefined;
  for (const [k, v] of Object.entries(r)) {
    if (DROPPED.has(k)) continue;
    if (
      k === 'err' &&
      typeof v === 'object' &&
      v !== null &&
      typeof (v as { stack?: unknown }).stack === 'string'
    ) {
      const { stack: s, ...err } = v as { stack: string };
      stack = s;
      rest[k] = err;
      continue;
    }
    rest[k] = v;
  }
  const msg = typeof r.msg === 'string' ? r.msg : '';
  const fields = Object.keys(rest).length > 0 ? ` ${JSON.stringify(rest)}` : '';
  const head = `${time} ${level} ${msg}${fields}`.trim();
  return { lines: stack ? [head, ...stack.split('\n')] : [head], level: r.level };
}
