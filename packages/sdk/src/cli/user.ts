import { once } from 'node:events';
import { Faregate } from '../client.ts';
import { FaregateError } from '../errors.ts';
import type { WebSocketConstructor } from '../types.ts';
import { batchesCommand } from './batches.ts';
import { UsageError } from './usage.ts';

/** The flags the user commands read (a subset of the CLI's). */
export interface UserValues {
  'api-key'?: string | undefined;
  model?: string | undefined;
  endpoint?: string | undefined;
  metadata?: string[] | undefined;
  watch?: boolean | undefined;
  output?: string | undefined;
  errors?: string | undefined;
  after?: string | undefined;
  limit?: string | undefined;
  json?: boolean | undefined;
}

export interface UserContext {
  sy: Faregate;
  v: UserValues;
  out: (s: string) => void;
  err: (s: string) => void;
  stdout: NodeJS.WritableStream;
  /** Where the progress bar draws (it draws only on a terminal). */
  stderr: NodeJS.WritableStream;
}

export interface UserIo {
  env: Record<string, string | undefined>;
  out: (s: string) => void;
  err: (s: string) => void;
  fetch: typeof fetch;
  stdout?: NodeJS.WritableStream;
  stderr?: NodeJS.WritableStream;
  WebSocket?: WebSocketConstructor;
}

/**
 * The commands a tenant runs with its API key (`FAREGATE_API_KEY` or `--api-key`): batches and job
 * streams, through the SDK. Returns the exit code.
 */
export async function runUser(pos: string[], v: UserValues, base: string, io: UserIo): Promise<number> {
  const apiKey = v['api-key'] ?? io.env.FAREGATE_API_KEY;
  if (!apiKey) {
    io.err('missing API key: pass --api-key or set FAREGATE_API_KEY');
    return 2;
  }
  const sy = new Faregate({
    baseURL: base,
    apiKey,
    fetch: io.fetch,
    ...(io.WebSocket ? { WebSocket: io.WebSocket } : {}),
  });
  const ctx: UserContext = {
    sy,
    v,
    out: io.out,
    err: io.err,
    stdout: io.stdout ?? process.stdout,
    stderr: io.stderr ?? process.stderr,
  };
  try {
    if (pos[0] === 'batches') return await batchesCommand(pos, ctx);
    if (pos[0] === 'jobs' && pos[1] === 'tail') return await tail(pos[2], ctx);
    throw new UsageError(`unknown command: ${pos.join(' ')}`);
  } catch (e) {
    if (e instanceof UsageError) throw e;
    if (e instanceof FaregateError) {
      io.err(`error${e.status ? ` ${e.status}` : ''}: ${e.message}`);
      return 1;
    }
    io.err(`error: ${(e as Error).message}`);
    return 1;
  } finally {
    sy.close();
  }
}

/**
 * `faregate jobs tail <id>`: the job's answer as it is generated (text on standard output, statuses
 * on standard error), from its first frame (or after `--after <seq>`), until it ends.
 */
async function tail(id: string | undefined, ctx: UserContext): Promise<number> {
  if (!id) throw new UsageError('missing job id: faregate jobs tail <req_…>');
  const after = ctx.v.after ? Number(ctx.v.after) : 0;
  if (!Number.isInteger(after) || after < 0)
    throw new UsageError('--after takes a frame seq (a whole number)');
  const write = async (s: string) => {
    if (!ctx.stdout.write(s)) await once(ctx.stdout, 'drain');
  };
  let printed = false;
  let failed = false;
  for await (const f of ctx.sy.subscribe(id, { after })) {
    if (ctx.v.json) {
      await write(`${JSON.stringify(f)}\n`);
      failed = f.type === 'error';
      continue;
    }
    switch (f.type) {
      case 'status':
        ctx.err(
          `[${f.state}${f.provider ? ` ${f.provider}${f.model ? `/${f.model}` : ''}` : ''}${f.reason ? `: ${f.reason}` : ''}]`,
        );
        break;
      case 'reset':
        // What was printed cannot be taken back: mark where the new answer starts.
        if (printed) await write('\n');
        ctx.err(`[restarted: ${f.reason}]`);
        printed = false;
        break;
      case 'delta':
        // The first choice's answer, as `done` prints (`n > 1` interleaves every choice's deltas).
        if (f.text && !f.choice) {
          await write(f.text);
          printed = true;
        }
        break;
      case 'done': {
        // A job that streamed no deltas still has its answer in the result.
        const msg = f.result.choices[0]?.message;
        if (!printed && msg?.content) await write(msg.content);
        else if (!printed && msg?.tool_calls) await write(JSON.stringify(msg.tool_calls));
        await write('\n');
        return 0;
      }
      case 'embeddings':
        await write(`${JSON.stringify(f.result)}\n`);
        return 0;
      case 'error':
        if (printed) await write('\n');
        ctx.err(`error ${f.status}: ${f.error.message} (${f.error.code})`);
        return 1;
    }
  }
  return failed ? 1 : 0;
}
