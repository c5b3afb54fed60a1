import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import OpenAI, { toFile } from 'openai';
import { checkLedgerInvariants } from '@faregate/db/invariants';
import { createDb } from '@faregate/db/client';
import { makeKeys } from '@faregate/queue/keys';
import { hashSlot } from '@faregate/queue/redis';
import { until } from '@faregate/testing/env';
import { adminCall } from './support/calls.ts';
import { assemble, jobApi } from './support/jobs.ts';
import { isTerminal, RawWs } from './support/raw-ws.ts';
import { type RedisCluster, startRedisCluster } from './support/redis-cluster.ts';
import { type Stack, startStack } from './support/stack.ts';

/**
 * The gateway on a real Redis Cluster (3 masters, 3 replicas, the Debian redis-server binary in
 * cluster mode) selected by REDIS_CLUSTER_NODES in every service: chat completions (JSON and
 * SSE), a job followed over the WebSocket, request limits, Idempotency-Key, billing exactly once,
 * and a failover of a master during traffic losing no accepted request. After everything, no node
 * ever refused a command as cross-slot (Redis counts them: `INFO errorstats`).
 */

let cluster: RedisCluster;
let stack: Stack;
let openai: OpenAI;

beforeAll(async () => {
  cluster = await startRedisCluster({ masters: 3, replicas: 1 });
  const first = cluster.nodes[0]?.port;
  stack = await startStack({
    providers: ['openai', 'anthropic'],
    // REDIS_URL gives only credentials and TLS with a cluster: a plain URL of one node here.
    redisUrl: `redis://127.0.0.1:${first}`,
    env: {
      REDIS_CLUSTER_NODES: cluster.nodesEnv,
      // The shared limiter (limiter.lua) and the max-in-flight gate (in-flight.lua) run on every call.
      WORKER_RPM: '100000',
      WORKER_MAX_IN_FLIGHT: '64',
      BILLING_HOLD_SWEEP_MS: '1000',
      // A read whose reply died with a killed master leaves its entries pending on billing's own
      // consumer: they are taken over once idle this long (30 s by default).
      BILLING_CLAIM_IDLE_MS: '3000',
    },
  });
  // No request here takes long: one left waiting (a reply lost with a node) fails the test in 30 s.
  openai = new OpenAI({ apiKey: stack.apiKey, baseURL: `${stack.url}/v1`, maxRetries: 0, timeout: 30_000 });
}, 180_000);

afterAll(async () => {
  await stack?.stop();
  await cluster?.stop();
});

const ask = (content: string) => [{ role: 'user' as const, content }];

/** The request ids billed (final usage events) among `ids`, and any billed more than once. */
async function billed(ids: readonly string[]) {
  const r = await stack.sql.query<{ request_id: string; n: number }>(
    'SELECT request_id, count(*)::int AS n FROM usage_events WHERE final AND request_id = ANY($1) GROUP BY 1',
    [ids],
  );
  return { settled: r.rows.length, twice: r.rows.filter((x) => x.n !== 1).map((x) => x.request_id) };
}

async function settledOnce(ids: readonly string[]) {
  await until(async () => (await billed(ids)).settled === ids.length, {
    timeoutMs: 30_000,
    what: `${ids.length} requests settled by billing`,
  }).catch(async (e: Error) => {
    const got = await stack.sql.query<{ request_id: string }>(
      'SELECT DISTINCT request_id FROM usage_events WHERE final AND request_id = ANY($1)',
      [ids],
    );
    const have = new Set(got.rows.map((r) => r.request_id));
    const missing = ids.filter((id) => !have.has(id));
    throw new Error(`${e.message}: not settled ${missing.join(' ')}\n${stack.logs().slice(-8000)}`);
  });
  expect((await billed(ids)).twice).toEqual([]);
}

describe('the gateway on a 3-master Redis Cluster', () => {
  it('runs on the cluster: its keys are spread over the masters', async () => {
    const info = String(await cluster.ask(cluster.nodes[0]?.port ?? 0, 'CLUSTER', 'INFO'));
    expect(info).toContain('cluster_state:ok');
    expect(info).toContain('cluster_size:3');
    // Each pool's queue, and the usage partitions, are on masters of their own slots.
    const keys = makeKeys(stack.prefix);
    const owners = new Set<number>();
    for (const key of [keys.bull('openai', 'meta'), keys.bull('anthropic', 'meta'), ...keys.usageStreams]) {
      // (hashSlot, which groups the gateway's cross-slot reads, agrees with Redis.)
      expect(hashSlot(key)).toBe(await cluster.ask(cluster.nodes[0]?.port ?? 0, 'CLUSTER', 'KEYSLOT', key));
      owners.add((await cluster.owner(hashSlot(key))).master);
    }
    expect(owners.size).toBe(3);
    // And the services really write through the cluster: every master holds keys of this stack.
    await openai.chat.completions.create({ model: 'openai/gpt-4o-mini', messages: ask('spread') });
    const masters = new Set<number>();
    for (const n of cluster.nodes) {
      const role = String(await cluster.ask(n.port, 'ROLE'));
      if (!role.startsWith('master')) continue;
      const [, found] = (await cluster.ask(
        n.port,
        'SCAN',
        '0',
        'MATCH',
        `${stack.prefix}:*`,
        'COUNT',
        '10000',
      )) as [string, string[]];
      if (found.length > 0) masters.add(n.port);
    }
    expect(masters.size).toBe(3);
    // Both pools run their fast lane (advertised in their lane's slot), beside BullMQ.
    for (const pool of ['openai', 'anthropic']) {
      const alive = keys.fast(pool, 'alive');
      const { master } = await cluster.owner(hashSlot(alive));
      expect(await cluster.ask(master, 'GET', alive), `${pool} lane`).toBe('1');
    }
  });

  it('answers a chat completion, as JSON and streamed (SSE), billed once each', async () => {
    const plain = await openai.chat.completions.create({
      model: 'openai/gpt-4o-mini',
      messages: ask('hello'),
    });
    expect(plain.choices[0]?.message.content).toBeTruthy();
    const stream = await openai.chat.completions.create({
      model: 'anthropic/claude-haiku-4-5',
      messages: ask('stream please'),
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    let id = '';
    for await (const chunk of stream) {
      id = chunk.id;
      text += chunk.choices[0]?.delta.content ?? '';
    }
    expect(text.length).toBeGreaterThan(0);
    await settledOnce([plain.id, id]);
  });

  it("retries through a provider's 500 and 429 (the request's route, the pool's pause), billed once", async () => {
    stack.fake.script('openai', [{ fault: '500' }, { fault: '429', retryAfterMs: 50 }]);
    const before = stack.fake.calls().length;
    const r = await openai.chat.completions.create({
      model: 'openai/gpt-4o-mini',
      messages: ask('retry me'),
    });
    expect(r.choices[0]?.message.content).toBeTruthy();
    const calls = stack.fake
      .calls()
      .slice(before)
      .filter((c) => c.provider === 'openai' && c.model !== null);
    expect(calls.map((c) => c.status)).toEqual([500, 429, 200]);
    await settledOnce([r.id]);
  });

  it('streams an async job over the WebSocket, every frame once and in order', async () => {
    const jobs = jobApi(stack.url);
    const job = await jobs.submit(stack.apiKey, 'a story over the socket');
    const ws = await RawWs.open(stack.url, stack.apiKey);
    try {
      ws.send({ op: 'subscribe', job, after: 0 });
      await ws.next((m) => m.job === job && isTerminal(m), `the end of ${job}`);
      const frames = ws.frames(job);
      expect(frames.map((f) => f.seq)).toEqual(frames.map((_, i) => i + 1));
      expect(frames.at(-1)?.type).toBe('done');
      const done = await jobs.finished(stack.apiKey, job);
      expect(assemble(frames)).toBe(done.result?.choices[0]?.message.content);
    } finally {
      await ws.close();
    }
    await settledOnce([job]);
  });

  it("applies a key's request limit across the cluster (429 once it is used)", async () => {
    const acct = await adminCall(stack, 'POST', '/admin/v1/accounts', { name: 'cluster-limits' });
    await adminCall(stack, 'POST', '/admin/v1/credits', { account_id: acct.id, amount_usd: '1' });
    const k = await adminCall(stack, 'POST', '/admin/v1/keys', { account_id: acct.id, name: 'limited' });
    await adminCall(stack, 'PATCH', `/admin/v1/keys/${k.id}`, { rpm_limit: 3 });
    await until(
      async () =>
        (
          await stack.sql.query(
            `SELECT 1 FROM credit_commands WHERE account_id = $1 AND status = 'applied'`,
            [acct.id],
          )
        ).rowCount === 1,
      { timeoutMs: 30_000, what: 'the credit applied' },
    );
    const sdk = new OpenAI({ apiKey: String(k.key), baseURL: `${stack.url}/v1`, maxRetries: 0 });
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) {
      const r = await sdk.chat.completions
        .create({ model: 'openai/gpt-4o-mini', messages: ask(`limited ${i}`) })
        .then(
          () => 200,
          (e: unknown) => (e instanceof OpenAI.APIError ? (e.status ?? 0) : -1),
        );
      statuses.push(r);
    }
    expect(statuses).toEqual([200, 200, 200, 429]);
  });

  it('replays a request sent twice with one Idempotency-Key, running and billing it once', async () => {
    const send = () =>
      openai.chat.completions
        .create(
          { model: 'openai/gpt-4o-mini', messages: ask('only once') },
          { headers: { 'Idempotency-Key': `cluster-${stack.prefix}` } },
        )
        .withResponse();
    const first = await send();
    const again = await send();
    expect(again.response.headers.get('idempotent-replayed')).toBe('true');
    expect(again.data.id).toBe(first.data.id);
    expect(again.data.choices[0]?.message.content).toBe(first.data.choices[0]?.message.content);
    await settledOnce([first.data.id]);
  });

  it('runs an OpenAI batch (its lines are jobs in every partition), and cancels a running job', async () => {
    stack.fake.configure({ provider: 'openai', chunkMs: 0, tokens: 8 });
    const lines = Array.from({ length: 12 }, (_, i) => ({
      custom_id: `line-${i}`,
      method: 'POST',
      url: '/v1/chat/completions',
      body: { model: 'openai/gpt-4o-mini', messages: ask(`batch line ${i}`) },
    }));
    const file = await openai.files.create({
      file: await toFile(Buffer.from(`${lines.map((l) => JSON.stringify(l)).join('\n')}\n`), 'b.jsonl'),
      purpose: 'batch',
    });
    const b = await openai.batches.create({
      input_file_id: file.id,
      endpoint: '/v1/chat/completions',
      completion_window: '24h',
    });
    const done = await until(
      async () => {
        const r = await openai.batches.retrieve(b.id);
        return ['completed', 'failed', 'expired', 'cancelled'].includes(r.status) ? r : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 200, what: `batch ${b.id} to end` },
    );
    expect(done.status).toBe('completed');
    expect(done.request_counts).toMatchObject({ total: 12, completed: 12, failed: 0 });

    // A long answer, cancelled while it streams: the cancel flag (in the job's slot) and the cancel
    // channel (pub/sub reaches every node) stop the worker.
    stack.fake.configure({ provider: 'openai', chunkMs: 20, tokens: 400 });
    const jobs = jobApi(stack.url);
    const job = await jobs.submit(stack.apiKey, 'a long one to cancel');
    const ws = await RawWs.open(stack.url, stack.apiKey);
    try {
      ws.send({ op: 'subscribe', job, after: 0 });
      await ws.next((m) => m.job === job && m.type === 'delta', 'the first delta');
      expect((await jobs.call(stack.apiKey, 'POST', `/v1/jobs/${job}/cancel`)).status).toBeLessThan(300);
      const end = await ws.next((m) => m.job === job && isTerminal(m), `the end of ${job}`);
      expect(end).toMatchObject({ type: 'error', error: { code: 'cancelled' } });
    } finally {
      await ws.close();
      stack.fake.configure({ provider: 'openai', chunkMs: 0, tokens: 8 });
    }
    expect((await jobs.finished(stack.apiKey, job)).status).toBe('cancelled');
  });

  it('a revoked key is refused at once (the revocation channel reaches the ingress through the cluster)', async () => {
    const acct = await adminCall(stack, 'POST', '/admin/v1/accounts', { name: 'cluster-revoke' });
    const k = await adminCall(stack, 'POST', '/admin/v1/keys', { account_id: acct.id, name: 'soon revoked' });
    const models = () =>
      fetch(`${stack.url}/v1/models`, { headers: { authorization: `Bearer ${k.key}` } }).then(
        (r) => r.status,
      );
    expect(await models()).toBe(200);
    expect(await adminCall(stack, 'POST', `/admin/v1/keys/${k.id}/revoke`, {})).toMatchObject({ id: k.id });
    await until(async () => (await models()) === 401, { timeoutMs: 1_000, what: 'the key refused' });
  });

  it('loses no accepted request and bills each once through a failover of a master during traffic', async () => {
    const keys = makeKeys(stack.prefix);
    // The master of the openai pool's queue and fast lane (every request of the pool touches it).
    const queueSlot = hashSlot(keys.bull('openai', 'wait'));
    const before = await cluster.owner(queueSlot);
    const replica = before.replicas[0];
    if (replica === undefined) throw new Error('the master has no replica');
    stack.fake.configure({ provider: 'openai', firstByteMs: 100 });
    const jobs = jobApi(stack.url);
    const sync: string[] = [];
    const accepted: string[] = [];
    const failures: string[] = [];
    let stop = false;
    const traffic = Array.from({ length: 4 }, async (_, lane) => {
      for (let i = 0; !stop; i++) {
        try {
          if (lane % 2 === 0) {
            const r = await openai.chat.completions.create({
              model: 'openai/gpt-4o-mini',
              messages: ask(`failover ${lane}.${i}`),
            });
            sync.push(r.id);
          } else {
            accepted.push(await jobs.submit(stack.apiKey, `failover job ${lane}.${i}`, 'openai/gpt-4o-mini'));
            await new Promise((r) => setTimeout(r, 25)); // paced: a stream of jobs, not a flood
          }
        } catch (e) {
          failures.push(String(e));
        }
      }
    });
    // Traffic flows, then the master fails over to its replica, then traffic flows on the new master.
    await until(() => sync.length + accepted.length >= 20, { timeoutMs: 30_000, what: 'traffic' });
    await cluster.failover(replica);
    const after = await cluster.owner(queueSlot);
    expect(after.master).toBe(replica);
    const mark = sync.length + accepted.length;
    await until(() => sync.length + accepted.length >= mark + 20, {
      timeoutMs: 60_000,
      what: 'traffic after the failover',
    });
    stop = true;
    await Promise.all(traffic);
    stack.fake.configure({ provider: 'openai', firstByteMs: 0 });
    console.log(
      `redis-cluster: failover of :${before.master} to :${replica} under traffic: ${sync.length} answered, ${accepted.length} jobs accepted, ${failures.length} refused`,
    );
    // A planned failover loses nothing: every request was answered or accepted.
    expect(failures).toEqual([]);
    const statuses = await Promise.all(
      accepted.map(async (id) => (await jobs.finished(stack.apiKey, id, 60_000)).status),
    );
    expect(statuses.filter((s) => s !== 'completed')).toEqual([]);
    await settledOnce([...sync, ...accepted]);
  }, 180_000);

  it('kill -9 of a master during traffic: its replica takes over, every accepted job completes and is billed once', async () => {
    // The victim: the node the ingress's subscriber connection (replies, live frames) is on when it
    // is a master (its replies published meanwhile are lost: the ingress must re-read the streams),
    // else the master of the openai pool's queue, and then the subscriber's node (a replica) dies too.
    // After the failover test the subscriber may be moving to another node, and the old master may
    // still be joining as a replica: wait for both rather than read a topology in motion.
    const sub = await until(() => cluster.clientNode('fg-ingress-sub'), {
      timeoutMs: 30_000,
      what: "the ingress's subscriber on a node",
    });
    const shards = await until(
      async () => {
        const all = await cluster.shards();
        return all.every((s) => s.replicas.length > 0) ? all : undefined;
      },
      { timeoutMs: 30_000, what: 'every shard with a replica' },
    );
    const queueMaster = (await cluster.owner(hashSlot(makeKeys(stack.prefix).bull('openai', 'wait')))).master;
    const victimShard =
      shards.find((s) => s.master === sub) ??
      shards.find((s) => s.master === queueMaster && !s.replicas.includes(sub)) ??
      shards.find((s) => !s.replicas.includes(sub));
    if (!victimShard) throw new Error('no shard to fail');
    const slot = victimShard.slot;
    const before = { master: victimShard.master, replicas: victimShard.replicas };
    const replica = before.replicas[0];
    if (replica === undefined) throw new Error('the master has no replica');
    const alsoKill = sub === before.master ? undefined : sub;
    stack.fake.configure({ provider: 'openai', firstByteMs: 100 });
    const jobs = jobApi(stack.url);
    const sync: string[] = [];
    const accepted: string[] = [];
    const refused: number[] = [];
    let stop = false;
    const traffic = Array.from({ length: 4 }, async (_, lane) => {
      for (let i = 0; !stop; i++) {
        const started = Date.now();
        try {
          if (lane % 2 === 0) {
            const r = await openai.chat.completions.create({
              model: 'openai/gpt-4o-mini',
              messages: ask(`kill ${lane}.${i}`),
            });
            sync.push(r.id);
          } else {
            accepted.push(await jobs.submit(stack.apiKey, `kill job ${lane}.${i}`, 'openai/gpt-4o-mini'));
            await new Promise((r) => setTimeout(r, 25));
          }
        } catch (e) {
          // Refused while the slot had no master: an error the caller sees (and may retry), in time.
          const status =
            e instanceof OpenAI.APIError
              ? (e.status ?? 0)
              : Number(/answered (\d+)/.exec(String(e))?.[1] ?? 0);
          refused.push(status);
          expect(Date.now() - started).toBeLessThan(30_000);
          await new Promise((r) => setTimeout(r, 100));
        }
      }
    });
    await until(() => sync.length + accepted.length >= 20, { timeoutMs: 30_000, what: 'traffic' });
    const killedAt = Date.now();
    await Promise.all([cluster.kill(before.master), alsoKill === undefined ? null : cluster.kill(alsoKill)]);
    // The replica is elected once the master is seen failing (node timeout 2 s).
    await until(async () => (await cluster.owner(slot, replica)).master === replica, {
      timeoutMs: 30_000,
      what: `replica :${replica} promoted`,
    });
    await cluster.healthy();
    const promotedMs = Date.now() - killedAt;
    const mark = sync.length + accepted.length;
    await until(() => sync.length + accepted.length >= mark + 20, {
      timeoutMs: 60_000,
      what: 'traffic after the promotion',
    });
    const resumedMs = Date.now() - killedAt;
    stop = true;
    await Promise.all(traffic);
    stack.fake.configure({ provider: 'openai', firstByteMs: 0 });
    console.log(
      `redis-cluster: traffic resumed ${resumedMs} ms after the kill; kill -9 of master :${before.master}${alsoKill ? ` and of replica :${alsoKill} (the ingress's subscriber's node)` : " (the ingress's subscriber's node)"}, :${replica} serving after ${promotedMs} ms: ${sync.length} answered, ${accepted.length} jobs accepted, ${refused.length} refused (${[...new Set(refused)].join(', ')})`,
    );
    // Refusals are 503s a client retries (with retry-after), never a wrong answer or a 500.
    expect(refused.filter((s) => s !== 503)).toEqual([]);
    const statuses = await Promise.all(
      accepted.map(async (id) => (await jobs.finished(stack.apiKey, id, 90_000)).status),
    );
    expect(statuses.filter((s) => s !== 'completed')).toEqual([]);
    console.log(`redis-cluster: jobs done ${Date.now() - killedAt} ms after the kill`);
    await settledOnce([...sync, ...accepted]);
    console.log(`redis-cluster: all settled ${Date.now() - killedAt} ms after the kill`);
  }, 240_000);

  it('the ledger balances, and no node refused a command as cross-slot', async () => {
    const { db, close } = createDb(stack.databaseUrl, { max: 2 });
    try {
      const v = await checkLedgerInvariants(db);
      expect(v.unbalancedTransactions).toEqual([]);
      expect(v.globalSumMicros).toBe(0n);
      expect(v.balanceDrift).toEqual([]);
      expect(v.misSettledEvents).toEqual([]);
    } finally {
      await close();
    }
    for (const n of cluster.nodes) {
      if (n.proc.exitCode !== null || n.proc.signalCode !== null) continue;
      const stats = String(await cluster.ask(n.port, 'INFO', 'errorstats'));
      expect(stats, `node :${n.port}`).not.toMatch(/CROSSSLOT/);
    }
    expect(stack.logs()).not.toMatch(/CROSSSLOT|same slots allocation group/);
  });
});
