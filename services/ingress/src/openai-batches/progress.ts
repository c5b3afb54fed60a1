import { eq } from 'drizzle-orm';
import type { BatchOutputLine } from '@faregate/contracts/openai-batches';
import { FINAL_BATCH_STATUSES } from '@faregate/contracts/ws';
import { batches } from '@faregate/db/schema/batches';
import { luaScript } from '@faregate/queue/lua';
import type { IngressDeps } from '../deps.ts';
import { type BatchRow, lineIds } from './batches.ts';

/**
 * An OpenAI batch's progress as a Redis Stream per batch (entry id `0-<seq>`, field `e` = the JSON
 * event of `BatchProgressEvent`), plus its live channel: the batch driver reports each line that
 * ended and each status it reached; WebSocket subscribers read the stream from their cursor and
 * follow the channel (progress-follow.ts), like job streams.
 *
 * Each line is reported once: lines are reported before the driver commits them, and a bitmap of
 * the lines already reported drops a second report (a step that failed after reporting and is run
 * again, or two drivers racing a lease). Statuses only move forward (validating < in_progress <
 * cancelling < finalizing < final), whichever process reports them. The stream is bounded
 * (`BATCH_PROGRESS_MAXLEN`, approximate: a reader further behind resumes with a gap, `truncated`) and lives `STREAM_TTL_SECONDS` after the batch ended.
 */

const RANK: Record<string, number> = {
  validating: 0,
  in_progress: 1,
  cancelling: 2,
  finalizing: 3,
  completed: 4,
  failed: 4,
  expired: 4,
  cancelled: 4,
};

export const isFinalBatchStatus = (s: string): boolean =>
  (FINAL_BATCH_STATUSES as readonly string[]).includes(s);

const publishScript = luaScript<{
  keys: [events: string, meta: string, seen: string];
  args: [
    channel: string,
    batchJson: string,
    maxlen: number,
    activeTtlMs: number,
    endTtlMs: number,
    mode: 'l' | 's',
    ...rest: (string | number)[],
  ];
  result: number;
}>(new URL('./progress.publish.lua', import.meta.url), { numberOfKeys: 3 });

/** The batch's progress keys (one hash tag: the publish script touches them together) and channel. */
export function progressKeys(deps: IngressDeps, batchId: string) {
  const p = `${deps.keys.prefix}:{${batchId}}`;
  return { events: `${p}:pe`, meta: `${p}:pm`, seen: `${p}:ps`, channel: deps.keys.live(batchId) };
}

function run(deps: IngressDeps, batchId: string, mode: 'l' | 's', rest: (string | number)[]) {
  const k = progressKeys(deps, batchId);
  const endTtlMs = deps.config.STREAM_TTL_SECONDS * 1000;
  return publishScript(
    deps.redis,
    [k.events, k.meta, k.seen],
    [
      k.channel,
      JSON.stringify(batchId),
      deps.config.BATCH_PROGRESS_MAXLEN,
      deps.config.BATCH_WINDOW_SECONDS * 1000 + endTtlMs,
      endTtlMs,
      mode,
      ...rest,
    ],
  );
}

/**
 * A line as the driver records it: its output or error file line already serialized (`json`; null
 * for a line stopped by a cancel, which has none), with the two fields progress reports of it.
 */
export interface EndedLine {
  line: number;
  state: 'completed' | 'failed' | 'cancelled' | 'expired';
  json: string | null;
  /** The line's custom_id when known here (a cancelled line's comes from its row). */
  customId?: string;
  /** The status code of its response, when it has one. */
  statusCode?: number;
}

/** A line ended with this result line (serialized here; null: no result line). */
export const endedWith = (
  line: number,
  state: EndedLine['state'],
  result: BatchOutputLine | null,
): EndedLine => ({
  line,
  state,
  json: result ? JSON.stringify(result) : null,
  ...(result ? { customId: result.custom_id } : {}),
  ...(result?.response ? { statusCode: result.response.status_code } : {}),
});

/**
 * A completed line's output-file line around its answer's JSON as the worker wrote it (not parsed
 * and serialized again): the same text, key for key, as `JSON.stringify` of a BatchOutputLine.
 */
export const completedRaw = (
  line: number,
  id: string,
  customId: string,
  requestId: string,
  body: string,
): EndedLine => ({
  line,
  state: 'completed',
  json: `{"id":${JSON.stringify(id)},"custom_id":${JSON.stringify(customId)},"response":{"status_code":200,"request_id":${JSON.stringify(requestId)},"body":${body}},"error":null}`,
  customId,
  statusCode: 200,
});

/** Reports lines that ended (the driver calls it before it commits them; repeats are dropped). */
export async function publishLines(deps: IngressDeps, batchId: string, ended: EndedLine[]): Promise<void> {
  if (ended.length === 0) return;
  // A line stopped by a cancel has no result line: its custom_id comes from the line's row.
  const missing = ended.filter((e) => e.customId === undefined).map((e) => e.line);
  const customIds = new Map<number, string>();
  if (missing.length > 0) {
    const r = await deps.db.$client.query<{ line: number; custom_id: string }>(
      'SELECT line, custom_id FROM batch_lines WHERE batch_id = $1 AND line = ANY($2::int[])',
      [batchId, missing],
    );
    for (const row of r.rows) customIds.set(row.line, row.custom_id);
  }
  const rest: (string | number)[] = [];
  for (const e of ended) {
    const fields = JSON.stringify({
      type: 'batch_line',
      line: e.line,
      custom_id: e.customId ?? customIds.get(e.line) ?? '',
      request_id: lineIds(batchId, e.line).job,
      status: e.state,
      ...(e.statusCode === undefined ? {} : { status_code: e.statusCode }),
    });
    rest.push(e.line, e.state === 'completed' || e.state === 'failed' ? e.state : '', fields.slice(1, -1));
  }
  await run(deps, batchId, 'l', rest);
}

type StatusRow = Pick<
  BatchRow,
  'id' | 'status' | 'total' | 'completed' | 'failed' | 'outputFileId' | 'errorFileId'
>;

/** Reports the batch's status if it is past the last one reported. */
export async function publishStatus(deps: IngressDeps, b: StatusRow): Promise<void> {
  const rank = RANK[b.status];
  if (rank === undefined) return;
  const final = isFinalBatchStatus(b.status);
  const extra = final
    ? `,${JSON.stringify({ output_file_id: b.outputFileId, error_file_id: b.errorFileId }).slice(1, -1)}`
    : '';
  await run(deps, b.id, 's', [b.status, rank, final ? '1' : '', b.total, b.completed, b.failed, extra]);
}

/** The batch record's status fields, fresh. */
export async function readStatusRow(deps: IngressDeps, batchId: string): Promise<StatusRow | undefined> {
  const [row] = await deps.db
    .select({
      id: batches.id,
      status: batches.status,
      total: batches.total,
      completed: batches.completed,
      failed: batches.failed,
      outputFileId: batches.outputFileId,
      errorFileId: batches.errorFileId,
    })
    .from(batches)
    .where(eq(batches.id, batchId));
  return row;
}

/**
 * After a driver step: reports the status the step started from (a cancel asked for meanwhile) and
 * the one it left the batch in. Cheap when nothing changed (the script returns at once).
 */
export async function progressAfterStep(deps: IngressDeps, before: BatchRow): Promise<void> {
  const now = await readStatusRow(deps, before.id);
  if (!now) return;
  if (now.status !== before.status) await publishStatus(deps, before);
  await publishStatus(deps, now);
}

/** Where a batch's progress stream stands: its last seq, the oldest seq kept, whether it ended. */
export async function progressPosition(
  deps: IngressDeps,
  batchId: string,
): Promise<{ lastSeq: number; firstSeq: number; final: boolean }> {
  const k = progressKeys(deps, batchId);
  const [[, meta], [, first]] = (await deps.redis
    .multi()
    .hmget(k.meta, 'seq', 'rank')
    .xrange(k.events, '-', '+', 'COUNT', 1)
    .exec()) as [[unknown, (string | null)[]], [unknown, [string, string[]][]]];
  const lastSeq = Number(meta[0] ?? 0);
  const firstId = first[0]?.[0];
  const firstSeq = firstId ? Number(firstId.slice(firstId.indexOf('-') + 1)) : lastSeq + 1;
  return { lastSeq, firstSeq, final: Number(meta[1] ?? -1) >= 4 };
}

/** Progress events after `afterSeq` (raw JSON), oldest first. */
export async function readProgress(
  deps: IngressDeps,
  batchId: string,
  afterSeq: number,
  count = 1000,
): Promise<string[]> {
  const entries = await deps.redis.xrange(
    progressKeys(deps, batchId).events,
    `0-${afterSeq + 1}`,
    '+',
    'COUNT',
    count,
  );
  return entries.map(([, fields]) => fields[1] ?? '');
}
