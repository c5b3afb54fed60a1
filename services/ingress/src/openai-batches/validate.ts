import { createHash } from 'node:crypto';
import { GatewayError } from '@faregate/contracts/errors';
import { type BatchError, BatchInputLine } from '@faregate/contracts/openai-batches';
import { linesOf } from '../files/store.ts';
import { isObject, parseJsonText } from '../request-body.ts';

/** `\u0000` in JSON text that is an escape (not an escaped backslash followed by `u0000`). */
const NUL_ESCAPE = /(^|[^\\])(\\\\)*\\u0000/;

/**
 * A surrogate escape in JSON.stringify's output (not an escaped backslash followed by `ud800`):
 * JSON.stringify writes a valid pair as the character itself and escapes only a lone surrogate, so
 * any such escape in its text is a lone one.
 */
const LONE_SURROGATE_ESCAPE = /(^|[^\\])(\\\\)*\\ud[89a-f]/;

/** What Postgres cannot store (text or jsonb), in JSON.stringify's output: why, or undefined. */
export function unstorable(json: string): 'nul' | 'surrogate' | undefined {
  if (json.includes('\\u0000') && NUL_ESCAPE.test(json)) return 'nul';
  if (json.includes('\\ud') && LONE_SURROGATE_ESCAPE.test(json)) return 'surrogate';
  return undefined;
}

/** The refusal of a value `unstorable` names. */
export const UNSTORABLE = {
  nul: 'contains a NUL character (\\u0000), which cannot be stored.',
  surrogate:
    'contains a lone UTF-16 surrogate (such as \\ud800 with no low surrogate after it), which cannot be stored.',
} as const;

/** A valid line, ready to be stored: its number (1-based), custom id and request body (JSON text). */
export interface ValidLine {
  line: number;
  customId: string;
  body: string;
}

/** A line exactly as BatchInputLine takes it (checked without the schema: the hot path of a large file). */
function wellFormed(v: unknown): v is BatchInputLine {
  if (!isObject(v)) return false;
  const { custom_id: id, method, url, body } = v;
  return (
    typeof id === 'string' &&
    id.length >= 1 &&
    id.length <= 512 &&
    method === 'POST' &&
    typeof url === 'string' &&
    isObject(body)
  );
}

/** A batch's model is kept up to this many characters (as a line's job record keeps it). */
const MAX_MODEL = 200;

/** custom_ids up to this long are kept as they are to find repeats; longer ones as a digest. */
const SHORT_ID = 64;

/** Errors kept per batch (OpenAI lists a bounded number too); the count goes on. */
const MAX_ERRORS = 100;

/** A line that holds no request: spaces, tabs and a CR (of a CRLF) only. */
const BLANK = /^[ \t\r]*$/;

/**
 * Validates a batch input file as OpenAI does, streamed: each line is JSON with `custom_id`, `method`
 * POST, `url` equal to the batch endpoint and an object `body`, and `custom_id`s are unique. Valid
 * lines go to `emit` (in order, in groups); a file with any error fails the batch, naming each line.
 * `model`: the model named by the first line that names one (a non-empty string), the batch's model
 * (null: no line does).
 */
export async function validateLines(
  source: AsyncIterable<Buffer>,
  endpoint: string,
  emit: (lines: ValidLine[]) => Promise<void>,
  opts: { groupSize?: number; maxLineBytes?: number } = {},
): Promise<{ total: number; errors: BatchError[]; model: string | null }> {
  const groupSize = opts.groupSize ?? 500;
  // A line is a request: held to the endpoint's own body limit (BODY_LIMIT_BYTES), as if sent live.
  const maxLineBytes = opts.maxLineBytes ?? Number.POSITIVE_INFINITY;
  const errors: BatchError[] = [];
  const fail = (e: BatchError) => {
    if (errors.length < MAX_ERRORS) errors.push(e);
  };
  // Ids up to SHORT_ID characters as `=id`, longer ones as `#digest` (the marks keep the two kinds
  // apart): memory stays bounded whatever their length.
  const seen = new Set<string>();
  let group: ValidLine[] = [];
  let n = 0;
  let total = 0;
  let model: string | null = null;
  for await (const read of linesOf(source)) {
    n++;
    // A byte order mark opening the file (Notepad, PowerShell's Out-File) is not part of line 1.
    const text = n === 1 && read.charCodeAt(0) === 0xfeff ? read.slice(1) : read;
    // Blank as the upload counts lines (files/upload.ts): JSON's own whitespace, nothing else (a
    // line of U+00A0 or a form feed is not JSON, and counted by the upload's line limit).
    if (BLANK.test(text)) continue;
    total++;
    // A UTF-16 length a third of the limit cannot be over it in UTF-8: most lines skip the count.
    if (text.length * 3 > maxLineBytes && Buffer.byteLength(text) > maxLineBytes) {
      fail({
        code: 'request_too_large',
        message: `This line is ${Buffer.byteLength(text)} bytes: a request can be at most ${maxLineBytes} bytes, as on ${endpoint} itself.`,
        param: null,
        line: n,
      });
      continue;
    }
    let value: unknown;
    try {
      // As the doors parse a body: a prototype key or a number out of range (which stored would
      // become null, an absent field) is refused, naming the line.
      value = parseJsonText(text, 'This line');
    } catch (e) {
      fail(
        e instanceof GatewayError
          ? { code: 'invalid_request', message: e.message, param: null, line: n }
          : {
              code: 'invalid_json_line',
              message: 'This line is not parseable as valid JSON.',
              param: null,
              line: n,
            },
      );
      continue;
    }
    // A line's custom_id counts as taken whatever else is wrong with the line: a later line repeating
    // it is reported too (short ids as they are, long ones by digest: a SHA-256 per line cost more
    // than its parse).
    const id = isObject(value) ? value.custom_id : undefined;
    if (typeof id === 'string' && id.length >= 1 && id.length <= 512) {
      const digest =
        id.length <= SHORT_ID ? `=${id}` : `#${createHash('sha256').update(id).digest('base64')}`;
      if (seen.has(digest)) {
        fail({
          code: 'duplicate_custom_id',
          message:
            'The custom_id for this request is a duplicate of another request. The custom_id parameter must be unique for each individual request in a batch.',
          param: 'custom_id',
          line: n,
        });
        continue;
      }
      seen.add(digest);
    }
    // The common case checked by hand (schema parsing costs more than the rest of a line); anything
    // else goes through the schema, which names what is wrong.
    const r = wellFormed(value) ? { success: true as const, data: value } : BatchInputLine.safeParse(value);
    if (!r.success) {
      const issue = r.error.issues[0];
      const param = issue?.path.map(String).join('.') || null;
      const field = issue?.path[0];
      // Absent, whatever the schema's issue (a missing `method` is the literal's `invalid_value`).
      const missing = typeof field === 'string' && isObject(value) && !Object.hasOwn(value, field);
      fail(
        missing
          ? {
              code: 'missing_required_parameter',
              message: `Missing required parameter: '${param}'.`,
              param,
              line: n,
            }
          : {
              code: param === 'method' ? 'invalid_method' : 'invalid_request',
              message:
                param === 'method'
                  ? "The method for this request is not supported: batch requests use 'POST'."
                  : param === null
                    ? 'This line must be a JSON object with custom_id, method, url and body.'
                    : `Invalid value for '${param}': ${issue?.message ?? 'invalid'}.`,
              param,
              line: n,
            },
      );
      continue;
    }
    if (r.data.url !== endpoint) {
      fail({
        code: 'invalid_url',
        message: `The URL provided for this request does not match the batch endpoint (${endpoint}).`,
        param: 'url',
        line: n,
      });
      continue;
    }
    const body = JSON.stringify(r.data.body);
    // Postgres stores no NUL character (text or jsonb): refused here, naming the line, not an
    // INSERT failing for the whole file.
    // Nor a lone UTF-16 surrogate (JSON's `"\ud800"` with no low half after it): jsonb refuses it
    // (22P02), and text would store U+FFFD in its place, another custom_id than the caller's.
    const cannot = r.data.custom_id.includes('\u0000')
      ? 'nul'
      : !r.data.custom_id.isWellFormed()
        ? 'surrogate'
        : unstorable(body);
    if (cannot) {
      fail({ code: 'invalid_request', message: `This line ${UNSTORABLE[cannot]}`, param: null, line: n });
      continue;
    }
    if (errors.length > 0) continue; // the batch fails: nothing more to store
    const named = r.data.body.model;
    // Cut at a character, never inside one (a surrogate pair split would end in U+FFFD).
    if (model === null && typeof named === 'string' && named !== '')
      model = named.length > MAX_MODEL ? named.slice(0, MAX_MODEL).replace(/[\uD800-\uDBFF]$/, '') : named;
    group.push({ line: n, customId: r.data.custom_id, body });
    if (group.length >= groupSize) {
      await emit(group);
      group = [];
    }
  }
  if (group.length > 0 && errors.length === 0) await emit(group);
  return { total, errors, model };
}
