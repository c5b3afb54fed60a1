import { parseArgs } from 'node:util';

export interface StartOptions {
  /** Processes per pool, from `--workers openai=3,anthropic=2`; pools not named run one. */
  workers: Map<string, number>;
  /** The env file to load; undefined: `.env` at the repository root when it exists. */
  envFile: string | undefined;
  /** Print the services' JSON log lines as they are instead of one readable line each. */
  json: boolean;
  help: boolean;
}

export const USAGE = `Usage: pnpm start [options]

Runs the whole gateway as local processes (fake provider when needed, ingress, billing, one worker
per provider pool) against REDIS_URL and DATABASE_URL, with settings from .env.

Options:
  --workers <pool=n,...>  processes per pool, e.g. --workers openai=3,anthropic=2 (0: not started)
  --env-file <path>       load this file instead of ./.env
  --json                  print the services' JSON log lines unchanged
  -h, --help              show this help
`;

/** Parses `openai=3,anthropic=2`. Throws on anything else, naming the bad part. */
export function parseWorkerCounts(spec: string): Map<string, number> {
  const counts = new Map<string, number>();
  for (const part of spec.split(',').map((s) => s.trim())) {
    if (part === '') continue;
    const m = /^([a-z0-9-]+)=(\d{1,3})$/.exec(part);
    if (!m) throw new Error(`--workers: "${part}" is not <pool>=<count> (e.g. openai=3)`);
    counts.set(m[1]!, Number(m[2]));
  }
  return counts;
}

export function parseOptions(argv: string[]): StartOptions {
  const { values } = parseArgs({
    // `pnpm start -- --workers …` hands the `--` on.
    args: argv[0] === '--' ? argv.slice(1) : argv,
    options: {
      workers: { type: 'string', multiple: true },
      'env-file': { type: 'string' },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
    allowPositionals: false,
  });
  const workers = new Map<string, number>();
  for (const spec of values.workers ?? []) {
    for (const [pool, n] of parseWorkerCounts(spec)) workers.set(pool, n);
  }
  return { workers, envFile: values['env-file'], json: values.json, help: values.help };
}
