/**
 * What a per-key request limit costs a request (README, Admin: request limits): the admission
 * script's round trip (every limit set: key and account, requests and tokens) against Redis, beside
 * a plain PING on the same connection, sequential, after a warm-up.
 *
 *   node bench/ingress/request-limits.ts [--redis redis://127.0.0.1:6379] [--n 5000]
 */
import { parseArgs } from 'node:util';
import { makeKeys } from '../../packages/queue/src/keys.ts';
import { createRedis } from '../../packages/queue/src/redis.ts';
import { admitRequest } from '../../services/ingress/src/request-limits.ts';

const { values } = parseArgs({
  options: {
    redis: { type: 'string', default: 'redis://127.0.0.1:6379' },
    n: { type: 'string', default: '5000' },
  },
});
const n = Number(values.n);
const redis = createRedis(values.redis);
const keys = makeKeys(`bench-rl-${process.pid}`);
const who = { accountId: 'acct_bench', keyId: 'key_bench' };
const limits = { keyRpm: 1e9, keyTpm: 1e9, accountRpm: 1e9, accountTpm: 1e9 };

async function timed(f: () => Promise<unknown>): Promise<number[]> {
  for (let i = 0; i < 500; i++) await f();
  const t: number[] = [];
  for (let i = 0; i < n; i++) {
    const s = performance.now();
    await f();
    t.push(performance.now() - s);
  }
  return t.sort((a, b) => a - b);
}
const q = (t: number[], p: number) => (t[Math.min(t.length - 1, Math.floor(t.length * p))] ?? 0).toFixed(3);

try {
  const admit = await timed(() => admitRequest(redis, keys, who, limits, 100, () => {}));
  const ping = await timed(() => redis.ping());
  console.log(`request-limit admission: p50 ${q(admit, 0.5)} ms, p99 ${q(admit, 0.99)} ms (n=${n})`);
  console.log(`PING on the same connection: p50 ${q(ping, 0.5)} ms, p99 ${q(ping, 0.99)} ms`);
} finally {
  await redis.del(keys.requestLimit(who.accountId, who.keyId), keys.requestLimit(who.accountId));
  redis.disconnect();
}
