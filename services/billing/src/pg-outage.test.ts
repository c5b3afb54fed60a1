import { createServer, type Server, type Socket, connect } from 'node:net';
import { addCredit, createAccount, createApiKey, getBalance } from '@faregate/db/accounts';
import { createDb } from '@faregate/db/client';
import { CLEAN_LEDGER, checkLedgerInvariants } from '@faregate/db/invariants';
import { until } from '@faregate/testing/env';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { type Harness, harness, metricValue, usageEvent } from './test-harness.ts';

/** A TCP proxy in front of Postgres that the test can cut and restore (an outage the consumer sees). */
class TcpProxy {
  #server: Server | undefined;
  #sockets = new Set<Socket>();
  port = 0;
  readonly targetHost: string;
  readonly targetPort: number;
  constructor(targetHost: string, targetPort: number) {
    this.targetHost = targetHost;
    this.targetPort = targetPort;
  }

  async start(): Promise<void> {
    const server = createServer((client) => {
      const upstream = connect(this.targetPort, this.targetHost);
      for (const s of [client, upstream]) {
        this.#sockets.add(s);
        s.on('close', () => this.#sockets.delete(s));
        s.on('error', () => {
          client.destroy();
          upstream.destroy();
        });
      }
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((resolve) => server.listen(this.port, '127.0.0.1', resolve));
    const addr = server.address();
    if (addr && typeof addr === 'object') this.port = addr.port;
    this.#server = server;
  }

  /** Refuses new connections and cuts every open one. */
  async stop(): Promise<void> {
    const s = this.#server;
    this.#server = undefined;
    for (const sock of this.#sockets) sock.destroy();
    if (s) await new Promise<void>((resolve) => s.close(() => resolve()));
  }
}

let h: Harness;
let proxy: TcpProxy;
beforeAll(async () => {
  h = await harness();
  const u = new URL(h.dbUrl);
  proxy = new TcpProxy(u.hostname, Number(u.port || 5432));
  await proxy.start();
});
afterAll(async () => {
  await proxy?.stop();
  await h?.close();
});

it('keeps events pending while Postgres is unreachable and settles them all when it returns', async () => {
  const { id: account } = await createAccount(h.db, { name: 'outage' });
  await addCredit(h.db, { accountId: account, amountMicros: 10_000_000n });
  const { id: key } = await createApiKey(h.db, { accountId: account, name: 'k' });

  const viaProxy = new URL(h.dbUrl);
  viaProxy.host = `127.0.0.1:${proxy.port}`;
  const proxied = createDb(viaProxy.toString(), { max: 2 });
  const c = await h.consumer('outage', { backoffMinMs: 20, backoffMaxMs: 200 }, proxied.db);

  const before = Array.from({ length: 10 }, (_, i) => usageEvent({ requestId: `pre${i}`, account, key }));
  for (const e of before) await h.xadd(e);
  await until(async () => (await metricValue(c.metrics.settled, { result: 'settled' })) === 10, {
    what: 'first batch',
  });

  await proxy.stop();
  const during = Array.from({ length: 30 }, (_, i) => usageEvent({ requestId: `mid${i}`, account, key }));
  for (const e of during) await h.xadd(e);
  // The consumer tried, failed, and acked nothing.
  await until(async () => (await metricValue(c.metrics.batchErrors, { kind: 'transient' })) >= 3, {
    what: 'failed settlement attempts',
  });
  const s = await h.usageStatus();
  expect(s.pending + s.backlog).toBe(30);

  await proxy.start();
  await until(
    async () => {
      const st = await h.usageStatus();
      return st.pending === 0 && st.backlog === 0;
    },
    { what: 'settled after Postgres returned' },
  );
  const n = await h.db.execute<{ n: string }>(sql`SELECT count(*)::text AS n FROM usage_events`);
  expect(Number(n.rows[0]!.n)).toBe(40);
  expect(await checkLedgerInvariants(h.db)).toEqual(CLEAN_LEDGER);
  const cost = await h.db.execute<{ s: string }>(sql`SELECT sum(cost_micros)::text AS s FROM usage_events`);
  expect((await getBalance(h.db, account)).balanceMicros).toBe(10_000_000n - BigInt(cost.rows[0]!.s));
  await c.stop();
  await proxied.close();
});
