import { once } from 'node:events';
import { createReadStream, createWriteStream, openAsBlob } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { Presets, SingleBar } from 'cli-progress';
import type { BatchEndpoint, BatchObject } from '@faregate/contracts/openai-batches';
import type { Faregate } from '../client.ts';
import type { UserContext } from './user.ts';
import { UsageError } from './usage.ts';

const FINAL = ['completed', 'failed', 'expired', 'cancelled'];

/** `faregate batches create|get|list|cancel|download …`; returns the exit code. */
export async function batchesCommand(pos: string[], ctx: UserContext): Promise<number> {
  const { sy, v } = ctx;
  const id = () => {
    if (!pos[2]) throw new UsageError(`missing batch id: faregate batches ${pos[1]} <batch_…>`);
    return pos[2];
  };
  switch (pos[1]) {
    case 'create':
      return create(pos[2], ctx);
    case 'get':
      return show(ctx, await sy.batches.retrieve(id()));
    case 'cancel':
      return show(ctx, await sy.batches.cancel(id()));
    case 'list': {
      const page = await sy.batches.list({
        ...(v.after ? { after: v.after } : {}),
        ...(v.limit ? { limit: Number(v.limit) } : {}),
      });
      if (v.json) ctx.out(JSON.stringify(page, null, 2));
      else {
        ctx.out('id\tstatus\tcompleted\tfailed\ttotal\tcreated_at');
        for (const b of page.data) {
          const c = b.request_counts;
          ctx.out(`${b.id}\t${b.status}\t${c.completed}\t${c.failed}\t${c.total}\t${iso(b.created_at)}`);
        }
        if (page.has_more) ctx.err(`more: faregate batches list --after ${page.last_id}`);
      }
      return 0;
    }
    case 'download':
      return download(await sy.batches.retrieve(id()), ctx);
    case 'watch':
      return watch(id(), ctx);
    default:
      throw new UsageError(`unknown command: ${pos.join(' ')}`);
  }
}

const iso = (s: number | null) => (s === null ? '-' : new Date(s * 1000).toISOString());

function summary(b: BatchObject): string {
  const c = b.request_counts;
  const lines = [
    `${b.id}: ${b.status}, ${c.completed} completed, ${c.failed} failed of ${c.total}`,
    `output_file_id: ${b.output_file_id ?? '-'}`,
    `error_file_id: ${b.error_file_id ?? '-'}`,
  ];
  for (const e of b.errors?.data ?? [])
    lines.push(`error: ${e.line === null ? '' : `line ${e.line}: `}${e.message} (${e.code})`);
  return lines.join('\n');
}

function show(ctx: UserContext, b: BatchObject): number {
  ctx.out(ctx.v.json ? JSON.stringify(b, null, 2) : summary(b));
  return 0;
}

async function create(path: string | undefined, ctx: UserContext): Promise<number> {
  if (!path) throw new UsageError('missing input file: faregate batches create <file.jsonl>');
  const { sy, v } = ctx;
  const metadata: Record<string, string> = {};
  for (const kv of v.metadata ?? []) {
    const i = kv.indexOf('=');
    if (i <= 0) throw new UsageError('--metadata takes key=value');
    metadata[kv.slice(0, i)] = kv.slice(i + 1);
  }
  let dir: string | undefined;
  let upload = path;
  try {
    if (v.model) {
      // Streamed to a temporary copy: a 200 MB file is never held whole in memory.
      dir = await mkdtemp(join(tmpdir(), 'faregate-'));
      upload = join(dir, basename(path));
      await withModel(path, upload, v.model);
    }
    const file = await sy.files.create(await openAsBlob(upload, { type: 'application/jsonl' }), {
      filename: basename(path),
    });
    ctx.err(`uploaded ${basename(path)} as ${file.id} (${file.bytes} bytes)`);
    const b = await sy.batches.create({
      input_file_id: file.id,
      // The gateway names the endpoints it accepts if this is not one of them.
      endpoint: (v.endpoint ?? '/v1/chat/completions') as BatchEndpoint,
      ...(Object.keys(metadata).length > 0 ? { metadata } : {}),
    });
    if (!v.watch) {
      ctx.out(v.json ? JSON.stringify(b, null, 2) : b.id);
      return 0;
    }
    ctx.err(`batch ${b.id} created; watching (Ctrl-C stops watching, not the batch)`);
    return await watch(b.id, ctx);
  } finally {
    if (dir) await rm(dir, { recursive: true, force: true });
  }
}

/**
 * Copies a batch input file setting `body.model` on every request line. Only the model's value is
 * written: the rest of each line is copied byte for byte, never parsed and written back (which
 * would turn `1e400` into `null`, round integers past 2^53 and merge repeated keys: another request
 * than the file's), so the gateway validates each line as written, under its own line number. A
 * line that is not a JSON request (or not UTF-8) is copied as it is: the gateway's validation names
 * it. A byte order mark opening the file is dropped (the gateway takes one; left in, line 1 would not
 * parse here and keep its own model).
 */
export async function withModel(from: string, to: string, model: string): Promise<void> {
  const out = createWriteStream(to);
  const name = JSON.stringify(model);
  const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
  let first = true;
  for await (const raw of linesWithEnds(createReadStream(from))) {
    let line = raw;
    if (first && line[0] === 0xef && line[1] === 0xbb && line[2] === 0xbf) line = line.subarray(3);
    first = false;
    const end = line.at(-1) === 10 ? line.length - 1 : line.length;
    let edited: string | undefined;
    try {
      edited = withModelSet(utf8.decode(line.subarray(0, end)), name);
    } catch {
      // not UTF-8: left for the gateway to refuse
    }
    const chunk = edited === undefined ? line : Buffer.from(`${edited}${end < line.length ? '\n' : ''}`);
    if (!out.write(chunk)) await once(out, 'drain');
  }
  out.end();
  await once(out, 'finish');
}

/** A file's lines as bytes, each with its `\n` (the last one may have none), streamed. */
async function* linesWithEnds(source: AsyncIterable<Buffer>): AsyncIterable<Buffer> {
  let carry: Buffer[] = [];
  for await (const b of source) {
    let start = 0;
    for (let i = b.indexOf(10); i !== -1; i = b.indexOf(10, start)) {
      const piece = b.subarray(start, i + 1);
      yield carry.length === 0 ? piece : Buffer.concat([...carry, piece]);
      carry = [];
      start = i + 1;
    }
    if (start < b.length) carry.push(b.subarray(start));
  }
  if (carry.length > 0) yield Buffer.concat(carry);
}

const isWs = (c: number) => c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d;

function skipWs(t: string, i: number): number {
  while (i < t.length && isWs(t.charCodeAt(i))) i++;
  return i;
}

/** The end of the JSON string starting at `i` (its opening quote), just past its closing quote. */
function stringEnd(t: string, i: number): number {
  for (let j = i + 1; j < t.length; j++) {
    const c = t.charCodeAt(j);
    if (c === 0x5c) j++;
    else if (c === 0x22) return j + 1;
  }
  return t.length;
}

/** The end of the JSON value starting at `i` (valid JSON: containers are matched by counting). */
function valueEnd(t: string, i: number): number {
  const c = t.charCodeAt(i);
  if (c === 0x22) return stringEnd(t, i);
  if (c === 0x7b || c === 0x5b) {
    let depth = 0;
    for (let j = i; j < t.length; j++) {
      const d = t.charCodeAt(j);
      if (d === 0x22) j = stringEnd(t, j) - 1;
      else if (d === 0x7b || d === 0x5b) depth++;
      else if (d === 0x7d || d === 0x5d) {
        depth--;
        if (depth === 0) return j + 1;
      }
    }
    return t.length;
  }
  let j = i;
  while (j < t.length && !isWs(t.charCodeAt(j)) && !',]}'.includes(t.charAt(j))) j++;
  return j;
}

/** The members of the JSON object opening at `i`: each key (decoded) and where its value lies. */
function membersOf(t: string, i: number): Array<{ key: string; start: number; end: number }> {
  const members: Array<{ key: string; start: number; end: number }> = [];
  let j = skipWs(t, i + 1);
  while (j < t.length && t.charCodeAt(j) === 0x22) {
    const keyEnd = stringEnd(t, j);
    const token = t.slice(j, keyEnd);
    const key = token.includes('\\') ? String(JSON.parse(token)) : token.slice(1, -1);
    const start = skipWs(t, skipWs(t, keyEnd) + 1); // past the colon
    const end = valueEnd(t, start);
    members.push({ key, start, end });
    j = skipWs(t, end);
    if (t.charCodeAt(j) === 0x2c) j = skipWs(t, j + 1);
  }
  return members;
}

/**
 * `line` with `model` (JSON text) as the value of `body.model`, and nothing else changed, or
 * undefined when the line is not a JSON object with an object `body`. Every `body` member that is an
 * object gets it, and every `model` in one: with a key given twice, whichever the gateway takes.
 */
export function withModelSet(line: string, model: string): string | undefined {
  let r: unknown;
  try {
    r = JSON.parse(line);
  } catch {
    return undefined; // not JSON: left for the gateway to refuse with its line number
  }
  if (!r || typeof r !== 'object' || Array.isArray(r)) return undefined;
  const body = (r as Record<string, unknown>).body;
  if (!Object.hasOwn(r, 'body') || !body || typeof body !== 'object' || Array.isArray(body)) return undefined;
  const edits: Array<{ start: number; end: number; text: string }> = [];
  for (const m of membersOf(line, skipWs(line, 0))) {
    if (m.key !== 'body' || line.charCodeAt(m.start) !== 0x7b) continue;
    const models = membersOf(line, m.start).filter((x) => x.key === 'model');
    if (models.length === 0) {
      const empty = line.charCodeAt(skipWs(line, m.start + 1)) === 0x7d;
      edits.push({ start: m.start + 1, end: m.start + 1, text: `"model":${model}${empty ? '' : ','}` });
    }
    for (const x of models) edits.push({ start: x.start, end: x.end, text: model });
  }
  let text = line;
  for (const e of edits.reverse()) text = text.slice(0, e.start) + e.text + text.slice(e.end);
  return text;
}

/** Follows the batch's progress over the WebSocket with a progress bar, then downloads its results. */
async function watch(id: string, ctx: UserContext): Promise<number> {
  const { sy, v } = ctx;
  const tty = Boolean((ctx.stderr as { isTTY?: boolean }).isTTY);
  const bar = new SingleBar(
    {
      stream: ctx.stderr,
      format: ' {bar} {percentage}% | {value}/{total} lines | {failed} failed | {status}',
      hideCursor: true,
      etaBuffer: 50,
    },
    Presets.shades_classic,
  );
  let started = false;
  let status = '';
  for await (const e of sy.batches.progress(id)) {
    const c = e.request_counts;
    const done = c.completed + c.failed;
    if (e.type !== 'batch_line' && e.status !== status) {
      status = e.status;
      // Without a terminal the bar draws nothing: say each status on a line of its own.
      if (!tty) ctx.err(`${id}: ${status} (${done}/${c.total})`);
    }
    if (e.type === 'batch_gap')
      ctx.err(`(${e.missed} progress events were no longer kept; counts are current)`);
    if (!started && c.total > 0) {
      bar.start(c.total, done, { failed: c.failed, status });
      started = true;
    } else if (started) bar.update(done, { failed: c.failed, status });
  }
  if (started) bar.stop();
  const b = await sy.batches.retrieve(id);
  if (!FINAL.includes(b.status)) {
    ctx.err(`${id}: progress ended while the batch is ${b.status}`);
    return 1;
  }
  ctx.out(summary(b));
  if (v.output || v.errors) await download(b, ctx);
  return b.status === 'completed' ? 0 : 1;
}

/** Writes the batch's output file (and error file) where `--output` / `--errors` say. */
async function download(b: BatchObject, ctx: UserContext): Promise<number> {
  const { v } = ctx;
  if (!b.output_file_id && !b.error_file_id) {
    ctx.err(`${b.id} has no result files ${FINAL.includes(b.status) ? '' : 'yet '}(status ${b.status})`);
    return 1;
  }
  const files: Array<[string | null, string]> = [
    [b.output_file_id, v.output ?? `${b.id}_output.jsonl`],
    [b.error_file_id, v.errors ?? `${b.id}_errors.jsonl`],
  ];
  for (const [fileId, to] of files) {
    if (!fileId) continue;
    await save(ctx.sy, fileId, to, ctx);
    if (to !== '-') ctx.err(`wrote ${fileId} to ${to}`);
  }
  return 0;
}

/** Streams a file's content to a path (`-`: standard output). */
async function save(sy: Faregate, fileId: string, to: string, ctx: UserContext): Promise<void> {
  const res = await sy.files.content(fileId);
  if (!res.body) throw new Error(`file ${fileId} has no content`);
  const body = Readable.fromWeb(res.body as WebReadableStream<Uint8Array>);
  if (to === '-') {
    for await (const chunk of body) {
      if (!ctx.stdout.write(chunk)) await once(ctx.stdout, 'drain');
    }
    return;
  }
  await pipeline(body, createWriteStream(to));
}
