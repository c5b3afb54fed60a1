import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/**
 * `pnpm bench` lists the benchmarks; `pnpm bench <name> [args…]` runs one (e.g. `gateway/latency`),
 * `pnpm bench all` runs each in turn with its defaults. A benchmark is a file `bench/<dir>/<name>.ts`
 * whose text documents its own command line (`node bench/<dir>/<name>.ts`); helpers never do.
 */

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BENCH = fileURLToPath(new URL('.', import.meta.url));
const NOT_BENCHMARKS = new Set(['node_modules', 'support']);

interface Benchmark {
  name: string;
  file: string;
  summary: string;
}

function discover(): Benchmark[] {
  const out: Benchmark[] = [];
  for (const dir of readdirSync(BENCH, { withFileTypes: true })) {
    if (!dir.isDirectory() || NOT_BENCHMARKS.has(dir.name)) continue;
    for (const f of readdirSync(`${BENCH}${dir.name}`).sort()) {
      if (!f.endsWith('.ts') || f.endsWith('.test.ts')) continue;
      const file = `bench/${dir.name}/${f}`;
      const text = readFileSync(`${ROOT}${file}`, 'utf8');
      if (!text.includes(`node ${file}`)) continue;
      out.push({ name: `${dir.name}/${f.slice(0, -3)}`, file, summary: summaryOf(text) });
    }
  }
  return out.sort((a, b) => a.name.localeCompare(b.name));
}

/** The first sentence of the file's leading comment, shortened to fit one line. */
function summaryOf(text: string): string {
  const words: string[] = [];
  for (const line of text.split('\n')) {
    if (!/^\s*(\/\*|\*|\/\/)/.test(line)) break;
    const t = line.replace(/^\s*(\/\*\*?|\*\/?|\/\/)\s?/, '').trim();
    if (!t) {
      if (words.length > 0) break;
      continue;
    }
    words.push(t);
    if (/[.:]$/.test(t)) break;
  }
  const s = words.join(' ').replace(/:$/, '');
  return s.length > 100 ? `${s.slice(0, 99)}…` : s;
}

function run(b: Benchmark, args: string[]): number {
  console.log(`\n=== ${b.name}: node ${b.file} ${args.join(' ')}`.trimEnd());
  const r = spawnSync(process.execPath, [b.file, ...args], { cwd: ROOT, stdio: 'inherit' });
  return r.status ?? 1;
}

const benchmarks = discover();
const [which, ...args] = process.argv.slice(2);
if (!which) {
  console.log('Benchmarks (run one with `pnpm bench <name> [args]`, or `pnpm bench all`):\n');
  for (const b of benchmarks) console.log(`  ${b.name.padEnd(20)} ${b.summary}`);
  console.log('\nSee bench/README.md for what each one measures.');
} else if (which === 'all') {
  const failed = benchmarks.filter((b) => run(b, []) !== 0).map((b) => b.name);
  if (failed.length > 0) {
    console.error(`\nfailed: ${failed.join(', ')}`);
    process.exit(1);
  }
} else {
  const b = benchmarks.find((x) => x.name === which || x.file === which);
  if (!b) {
    console.error(`no benchmark "${which}"; known: ${benchmarks.map((x) => x.name).join(', ')}`);
    process.exit(2);
  }
  process.exit(run(b, args));
}
