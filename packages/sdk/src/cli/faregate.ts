#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { UsageError } from './usage.ts';
import { runUser, type UserIo } from './user.ts';

const USAGE = `faregate — batches, job streams and admin operations against a Faregate gateway

With an API key (--api-key or env FAREGATE_API_KEY):
  faregate batches create <file.jsonl> [--model <model>] [--endpoint /v1/chat/completions|/v1/embeddings|/v1/responses]
                          [--metadata key=value]... [--watch [--output <path>] [--errors <path>]]
  faregate batches get|cancel <batch_…>
  faregate batches watch <batch_…> [--output <path>] [--errors <path>]
  faregate batches list [--limit <n>] [--after <batch_…>]
  faregate batches download <batch_…> [--output <path|->] [--errors <path|->]
  faregate jobs tail <req_…> [--after <seq>]

  --model sets the model of every line (its body.model), whatever the file says.
  --watch (or batches watch) follows the batch over the WebSocket with a progress bar until it ends,
          prints its result files, and with --output / --errors downloads them; exit 0 only if it
          completed.
  download writes <batch>_output.jsonl and <batch>_errors.jsonl unless told otherwise (-: stdout).
  jobs tail prints the answer as it is generated (statuses on stderr), ending with the job.

With the admin token (--admin-token or env FAREGATE_ADMIN_TOKEN):
  faregate accounts create --name <name> [--rpm <n>] [--tpm <n>]
  faregate accounts limits <acct_…> [--rpm <n|none>] [--tpm <n|none>]
  faregate keys create --account <acct_…> --name <name> [--spend-limit-usd <usd>] [--models a,b]
                       [--rpm <n>] [--tpm <n>] [--patience-ms <ms>]
  faregate keys limits <key_…> [--rpm <n|none>] [--tpm <n|none>] [--patience-ms <ms|none>]
  faregate keys revoke <key_…>
  faregate credit add --account <acct_…> --usd <amount> [--reference <text>] [--idempotency-key <k>]
  faregate balances

Options:
  --url <url>            gateway URL (env FAREGATE_URL, default http://localhost:8080)
  --api-key <key>        API key for batches and jobs (env FAREGATE_API_KEY)
  --admin-token <token>  admin token (env FAREGATE_ADMIN_TOKEN)
  --rpm, --tpm           requests / tokens per minute (every gateway process together; none: no limit)
  --patience-ms          how long the key's requests wait out a rate-limited provider (none: the default)
  --json                 print the raw JSON response
  -h, --help`;

export interface CliIo extends UserIo {}

/** Runs one CLI invocation; returns the process exit code. Exported for tests. */
export async function runCli(argv: string[], io: CliIo): Promise<number> {
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(argv);
  } catch (e) {
    io.err(`${(e as Error).message}\n\n${USAGE}`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help || positionals.length === 0) {
    io.out(USAGE);
    return values.help ? 0 : 2;
  }
  const base = (values.url ?? io.env.FAREGATE_URL ?? 'http://localhost:8080').replace(/\/+$/, '');
  if (positionals[0] === 'batches' || positionals[0] === 'jobs') {
    try {
      return await runUser(positionals, values, base, io);
    } catch (e) {
      if (!(e instanceof UsageError)) throw e;
      io.err(`${e.message}\n\n${USAGE}`);
      return 2;
    }
  }
  const token = values['admin-token'] ?? io.env.FAREGATE_ADMIN_TOKEN;
  if (!token) {
    io.err('missing admin token: pass --admin-token or set FAREGATE_ADMIN_TOKEN');
    return 2;
  }
  let req: { method: 'GET' | 'POST' | 'PATCH'; path: string; body?: unknown };
  try {
    req = route(positionals, values);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    io.err(`${e.message}\n\n${USAGE}`);
    return 2;
  }
  let res: Response;
  try {
    res = await io.fetch(`${base}${req.path}`, {
      method: req.method,
      headers: {
        authorization: `Bearer ${token}`,
        ...(req.body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      body: req.body === undefined ? undefined : JSON.stringify(req.body),
    });
  } catch (e) {
    io.err(`cannot reach ${base}: ${(e as Error).message}`);
    return 1;
  }
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  if (!res.ok) {
    const msg = (json as { error?: { message?: string } } | undefined)?.error?.message ?? text;
    io.err(`error ${res.status}: ${msg}`);
    return 1;
  }
  io.out(values.json ? JSON.stringify(json, null, 2) : render(positionals, json as Record<string, unknown>));
  return 0;
}

function parse(argv: string[]) {
  return parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      url: { type: 'string' },
      'admin-token': { type: 'string' },
      name: { type: 'string' },
      account: { type: 'string' },
      'spend-limit-usd': { type: 'string' },
      models: { type: 'string' },
      usd: { type: 'string' },
      reference: { type: 'string' },
      'idempotency-key': { type: 'string' },
      rpm: { type: 'string' },
      tpm: { type: 'string' },
      'patience-ms': { type: 'string' },
      'api-key': { type: 'string' },
      model: { type: 'string' },
      endpoint: { type: 'string' },
      metadata: { type: 'string', multiple: true },
      watch: { type: 'boolean' },
      output: { type: 'string' },
      errors: { type: 'string' },
      after: { type: 'string' },
      limit: { type: 'string' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
}

type Values = ReturnType<typeof parse>['values'];

function need(v: string | undefined, flag: string): string {
  if (!v) throw new UsageError(`missing --${flag}`);
  return v;
}

/** `--rpm`, `--tpm`, `--patience-ms` as the admin API's fields: a whole number, or `none` (null: removed). */
function limitFields(v: Values, patience: boolean): Record<string, number | null> {
  const out: Record<string, number | null> = {};
  const flags: Array<[keyof Values & string, string]> = [
    ['rpm', 'rpm_limit'],
    ['tpm', 'tpm_limit'],
    ...(patience ? [['patience-ms', 'patience_ms'] as [keyof Values & string, string]] : []),
  ];
  for (const [flag, field] of flags) {
    const raw = v[flag];
    if (raw === undefined) continue;
    if (typeof raw !== 'string' || !/^(none|\d{1,10})$/.test(raw))
      throw new UsageError(`--${flag} takes a whole number or "none"`);
    out[field] = raw === 'none' ? null : Number(raw);
  }
  return out;
}

function route(pos: string[], v: Values): { method: 'GET' | 'POST' | 'PATCH'; path: string; body?: unknown } {
  const cmd = pos.slice(0, 2).join(' ');
  switch (cmd) {
    case 'accounts create':
      return {
        method: 'POST',
        path: '/admin/v1/accounts',
        body: { name: need(v.name, 'name'), ...limitFields(v, false) },
      };
    case 'accounts limits':
    case 'keys limits': {
      const id = pos[2];
      if (!id) throw new UsageError(`missing ${pos[0] === 'keys' ? 'key' : 'account'} id`);
      return {
        method: 'PATCH',
        path: `/admin/v1/${pos[0]}/${encodeURIComponent(id)}`,
        body: limitFields(v, pos[0] === 'keys'),
      };
    }
    case 'keys create':
      return {
        method: 'POST',
        path: '/admin/v1/keys',
        body: {
          account_id: need(v.account, 'account'),
          name: need(v.name, 'name'),
          ...(v['spend-limit-usd'] ? { spend_limit_usd: v['spend-limit-usd'] } : {}),
          ...(v.models
            ? {
                allowed_models: v.models
                  .split(',')
                  .map((s) => s.trim())
                  .filter(Boolean),
              }
            : {}),
          ...limitFields(v, true),
        },
      };
    case 'keys revoke': {
      const id = pos[2];
      if (!id) throw new UsageError('missing key id');
      return { method: 'POST', path: `/admin/v1/keys/${encodeURIComponent(id)}/revoke` };
    }
    case 'credit add':
      return {
        method: 'POST',
        path: '/admin/v1/credits',
        body: {
          account_id: need(v.account, 'account'),
          amount_usd: need(v.usd, 'usd'),
          ...(v.reference ? { reference: v.reference } : {}),
          ...(v['idempotency-key'] ? { idempotency_key: v['idempotency-key'] } : {}),
        },
      };
    default:
      if (pos[0] === 'balances' && pos.length === 1) return { method: 'GET', path: '/admin/v1/balances' };
      throw new UsageError(`unknown command: ${pos.join(' ')}`);
  }
}

/** `rpm 60, tpm none, patience 2000 ms`: the limits an answer states. */
function limitsText(r: Record<string, unknown>): string {
  const v = (x: unknown) => (x === null ? 'none' : String(x));
  const parts = [];
  if ('rpm_limit' in r) parts.push(`rpm ${v(r.rpm_limit)}`);
  if ('tpm_limit' in r) parts.push(`tpm ${v(r.tpm_limit)}`);
  if ('patience_ms' in r)
    parts.push(`patience ${r.patience_ms === null ? 'default' : `${r.patience_ms} ms`}`);
  return parts.join(', ') || 'unchanged';
}

function render(pos: string[], r: Record<string, unknown>): string {
  switch (pos[0]) {
    case 'accounts':
      if (pos[1] === 'limits') return `account ${r.id}: ${limitsText(r)}`;
      return `account ${r.id} (${r.name})`;
    case 'keys':
      if (pos[1] === 'revoke') return `revoked ${r.id}`;
      if (pos[1] === 'limits') return `key ${r.id}: ${limitsText(r)}`;
      return `key ${r.id} for ${r.account_id}\n${r.key}\n(store it now: it is not shown again)`;
    case 'credit':
      return `credited ${r.amount_usd} USD to ${r.account_id}; balance ${r.balance_usd} USD (transaction ${r.transaction_id})`;
    case 'balances': {
      const rows = (r.data as Array<Record<string, string>>) ?? [];
      const lines = rows.map(
        (b) => `${b.account_id}\t${b.name}\t${b.balance_usd}\t${b.held_usd}\t${b.available_usd}`,
      );
      return ['account\tname\tbalance_usd\theld_usd\tavailable_usd', ...lines].join('\n');
    }
    default:
      return JSON.stringify(r, null, 2);
  }
}

if (import.meta.main) {
  const code = await runCli(process.argv.slice(2), {
    env: process.env,
    out: (s) => console.log(s),
    err: (s) => console.error(s),
    fetch: globalThis.fetch,
  });
  process.exitCode = code;
}
