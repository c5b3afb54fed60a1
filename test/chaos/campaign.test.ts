import { writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { until } from '@faregate/testing/env';
import {
  type Chaos,
  cleanVerdict,
  clockJump,
  type Fault,
  healthy,
  INVARIANTS,
  killAndRestart,
  postgresDown,
  postgresSlow,
  providerFaults,
  quietWithin,
  redisFull,
  redisPause,
  redisRestart,
  seeded,
  startChaos,
  together,
  type Verdict,
  verify,
  workload,
} from './harness.ts';

/**
 * The fault campaign, bounded for CI: a mixed workload (JSON, SSE, async jobs followed over
 * WebSocket; OpenAI, Anthropic, Gemini) while a seeded scheduler injects each fault, alone and
 * combined; after each run, every invariant is checked. A failing run names its scenario and seed:
 * replay it with `CHAOS_SCENARIO=<name> CHAOS_SEEDS=<seed> pnpm vitest run test/chaos`.
 * More seeds: `CHAOS_SEEDS=1,2,3`, `CHAOS_SEEDS=1..50`, or `CHAOS_RUNS=20` for 20 seeds from 1
 * (default 2: what CI runs). `CHAOS_REPORT=<file>` also writes the tables there (markdown).
 */

const SCENARIOS: Record<string, Fault> = {
  'kill -9 worker': killAndRestart('worker:openai'),
  'kill -9 billing': killAndRestart('billing'),
  'kill -9 ingress': killAndRestart('ingress'),
  'provider faults': providerFaults,
  'redis pause': redisPause,
  'redis restart (AOF)': redisRestart,
  'postgres down': postgresDown,
  'postgres slow': postgresSlow,
  'worker + provider + postgres': together(killAndRestart('worker:anthropic'), providerFaults, postgresDown),
  'billing + redis pause + slow postgres': together(killAndRestart('billing'), redisPause, postgresSlow),
  'clock jumps': clockJump,
  'redis full (maxmemory, noeviction)': redisFull,
  'clock jump + kill -9 worker': together(clockJump, killAndRestart('worker:gemini')),
};

const only = process.env.CHAOS_SCENARIO;
/** `1,2,7` or `1..50` (or both: `1..5,9`). */
const parseSeeds = (spec: string): number[] =>
  spec.split(',').flatMap((part) => {
    const m = /^\s*(\d+)\s*\.\.\s*(\d+)\s*$/.exec(part);
    if (!m) return [Number(part)];
    const [a, b] = [Number(m[1]), Number(m[2])];
    return Array.from({ length: Math.max(0, b - a + 1) }, (_, i) => a + i);
  });
const seeds = process.env.CHAOS_SEEDS
  ? parseSeeds(process.env.CHAOS_SEEDS)
  : Array.from({ length: Number(process.env.CHAOS_RUNS ?? 2) }, (_, i) => i + 1);
if (seeds.some((s) => !Number.isInteger(s) || s < 0))
  throw new Error(`CHAOS_SEEDS: not seeds: ${process.env.CHAOS_SEEDS} (e.g. 1,2,3 or 1..50)`);
const LOAD_MS = Number(process.env.CHAOS_LOAD_MS ?? 4000);
const CONCURRENCY = Number(process.env.CHAOS_CONCURRENCY ?? 6);

let chaos: Chaos;
const table: Array<{
  scenario: string;
  seed: number;
  requests: number;
  recoveryMs: number;
  verdict: Verdict;
}> = [];

beforeAll(async () => {
  chaos = await startChaos();
}, 120_000);

/** The scenario × invariant tables: each run, and how many runs of each scenario kept each invariant. */
function tables(): { perRun: string; summary: string } {
  const rows = table.map(
    (r) =>
      `| ${r.scenario} | ${r.seed} | ${r.requests} | ${(r.recoveryMs / 1000).toFixed(1)} | ${INVARIANTS.map((k) => (r.verdict[k].length === 0 ? 'ok' : `✗ ${r.verdict[k].length}`)).join(' | ')} |`,
  );
  const perRun = [
    `| scenario | seed | requests | recovery s | ${INVARIANTS.join(' | ')} |`,
    `|${'---|'.repeat(INVARIANTS.length + 4)}`,
    ...rows,
  ].join('\n');
  const names = [...new Set(table.map((r) => r.scenario))];
  const agg = names.map((n) => {
    const runs = table.filter((r) => r.scenario === n);
    const req = runs.reduce((a, r) => a + r.requests, 0);
    const worst = Math.max(...runs.map((r) => r.recoveryMs));
    return `| ${n} | ${runs.length} | ${req} | ${(worst / 1000).toFixed(1)} | ${INVARIANTS.map((k) => `${runs.filter((r) => r.verdict[k].length === 0).length}/${runs.length}`).join(' | ')} |`;
  });
  const summary = [
    `| scenario | runs | requests | worst recovery s | ${INVARIANTS.join(' | ')} |`,
    `|${'---|'.repeat(INVARIANTS.length + 4)}`,
    ...agg,
  ].join('\n');
  return { perRun, summary };
}

/** CHAOS_REPORT: the tables so far, rewritten after every run (a long run can be read while it goes). */
function writeReport(): void {
  if (!process.env.CHAOS_REPORT) return;
  const { perRun, summary } = tables();
  writeFileSync(process.env.CHAOS_REPORT, `seeds ${seeds.join(',')}\n\n${summary}\n\n${perRun}\n`);
}

afterAll(async () => {
  const { perRun, summary } = tables();
  console.log(`${perRun}\n\n${summary}`);
  writeReport();
  await chaos?.stop();
});

describe('fault campaign', () => {
  // Seed by seed, every scenario: a long run stopped early still covers every scenario.
  for (const seed of seeds) {
    for (const [scenario, fault] of Object.entries(SCENARIOS)) {
      if (only && only !== scenario) continue;
      it(`${scenario} (seed ${seed}): every invariant holds`, async () => {
        const rng = seeded(seed * 7919 + scenario.length);
        await healthy(chaos);
        const load = workload(chaos.stack, rng, LOAD_MS, CONCURRENCY);
        // The fault lands while the load runs.
        await new Promise((r) => setTimeout(r, 500 + rng.int(LOAD_MS / 2)));
        await fault(chaos, rng);
        // Once the fault is over the gateway serves again: time to the first complete answer.
        const recovery = recoveredIn(chaos);
        const outcomes = await load;
        const recoveryMs = await recovery;
        // Whatever was scripted and not used stays out of the next scenario.
        await fetch(`${chaos.stack.fake.url}/_control/faults`, { method: 'DELETE' });
        quietWithin(45_000);
        const verdict = await verify(chaos, outcomes);
        table.push({ scenario, seed, requests: outcomes.length, recoveryMs, verdict });
        writeReport();
        const completed = outcomes.filter((o) => o.complete).length;
        // The gateway kept serving: most requests were answered despite the fault.
        expect(completed, JSON.stringify(outcomes.filter((o) => !o.complete).slice(0, 5))).toBeGreaterThan(0);
        expect(verdict, `scenario "${scenario}" seed ${seed}\n${chaos.stack.logs().slice(-4000)}`).toEqual(
          cleanVerdict(),
        );
      }, 240_000);
    }
  }
});

/** Milliseconds from now until a plain chat completion is answered 200 again (throws after 60 s). */
async function recoveredIn(c: Chaos): Promise<number> {
  const t0 = Date.now();
  await until(
    async () => {
      const r = await fetch(`${c.stack.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${c.stack.apiKey}`, 'content-type': 'application/json' },
        body: JSON.stringify({
          model: 'openai/gpt-4o-mini',
          messages: [{ role: 'user', content: 'are you back? [[fake:{"tokens":2}]]' }],
        }),
        signal: AbortSignal.timeout(10_000),
      }).catch(() => undefined);
      await r?.body?.cancel().catch(() => {});
      return r?.status === 200;
    },
    { timeoutMs: 60_000, intervalMs: 100, what: 'a complete answer after the fault' },
  );
  return Date.now() - t0;
}
