import { once } from 'node:events';
import { createReadStream, createWriteStream, openAsBlob } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { createInterface } from 'node:readline';
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
 * Copies a batch input file setting `body.model` on every request line. A line that is not a JSON
 * request is copied as it is: the gateway's validation names it.
 */
export async function withModel(from: string, to: string, model: string): Promise<void> {
  const out = createWriteStream(to);
  const lines = createInterface({ input: createReadStream(from), crlfDelay: Number.POSITIVE_INFINITY });
  for await (const line of lines) {
    let text = line;
    try {
      const r: unknown = JSON.parse(line);
      if (r && typeof r === 'object' && 'body' in r && r.body && typeof r.body === 'object') {
        (r.body as Record<string, unknown>).model = model;
        text = JSON.stringify(r);
      }
    } catch {
      // not JSON: left for the gateway to refuse with its line number
    }
    if (!out.write(`${text}\n`)) await once(out, 'drain');
  }
  out.end();
  await once(out, 'finish');
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
