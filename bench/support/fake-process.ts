import { startFakeProvider } from '@faregate/fake-provider/server';

/**
 * The fake provider in a process of its own, for benchmarks: bound to loopback on a port the kernel
 * picks (no race between choosing and binding a port), announced as one JSON line on stdout.
 * The package's own `main.ts` binds 0.0.0.0 on a fixed port, which a benchmark should not do.
 */
const fake = await startFakeProvider({ port: 0, host: '127.0.0.1' });
process.stdout.write(`${JSON.stringify({ fakeUrl: fake.url })}\n`);

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    fake.close().then(() => process.exit(0));
  });
}
