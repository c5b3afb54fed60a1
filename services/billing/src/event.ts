import { withRule } from '@faregate/contracts/refine';
import { UsageEvent } from '@faregate/contracts/usage';

const INT4_MAX = 2_147_483_647;
// Text that Postgres can store and we are willing to index: no NUL bytes, bounded length.
const safeText = (s: string) => s.length > 0 && s.length <= 256 && !s.includes('\u0000');

/**
 * The contract's UsageEvent plus what the ledger needs to store it (int4 token counts, a real
 * timestamp, sane ids). An event failing this is malformed: acked and counted, never retried,
 * because retrying it could only block the stream.
 */
export const SettleableEvent = withRule(UsageEvent, (e, ctx) => {
  for (const f of ['id', 'requestId', 'account', 'key', 'provider', 'model'] as const) {
    if (!safeText(e[f]))
      ctx.addIssue({ code: 'custom', path: [f], message: 'empty, too long or contains NUL' });
  }
  for (const f of [
    'hop',
    'attempt',
    'inputTokens',
    'cachedInputTokens',
    'cacheWriteTokens',
    'outputTokens',
    'reasoningTokens',
  ] as const) {
    if (e[f] > INT4_MAX) ctx.addIssue({ code: 'custom', path: [f], message: 'out of range' });
  }
  if ((e.cacheWrite1hTokens ?? 0) > e.cacheWriteTokens) {
    ctx.addIssue({ code: 'custom', path: ['cacheWrite1hTokens'], message: 'more than cacheWriteTokens' });
  }
  // Between 2000-01-01 and 2100-01-01: anything else is a unit mistake (seconds vs ms) or garbage.
  if (!Number.isFinite(e.at) || e.at < 946_684_800_000 || e.at > 4_102_444_800_000) {
    ctx.addIssue({ code: 'custom', path: ['at'], message: 'not an epoch-ms timestamp' });
  }
});

export type ParsedEntry = { ok: true; event: UsageEvent } | { ok: false; reason: string };

/** Parses one stream entry's fields (`e` = JSON UsageEvent). */
export function parseEntry(fields: string[] | null): ParsedEntry {
  if (!fields) return { ok: false, reason: 'entry deleted' };
  let raw: string | undefined;
  for (let i = 0; i + 1 < fields.length; i += 2) if (fields[i] === 'e') raw = fields[i + 1];
  if (raw === undefined) return { ok: false, reason: 'no "e" field' };
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch {
    return { ok: false, reason: 'invalid JSON' };
  }
  const r = SettleableEvent.safeParse(json);
  if (!r.success)
    return { ok: false, reason: r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ') };
  return { ok: true, event: r.data };
}
