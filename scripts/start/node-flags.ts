/**
 * Node flags every service process runs with, however it is started: `pnpm start` (the supervisor)
 * and the bench stack pass them on the command line; the image sets the same in `NODE_OPTIONS`
 * (Dockerfile; a test keeps the two equal), so compose and the Helm chart get them too.
 *
 * `--max-semi-space-size=32` (MiB; V8's default is 16 on 64-bit): a request allocates a few tens
 * of KiB of short-lived objects in each process, and a larger young generation is scavenged half as
 * often. `bench/gateway/latency.ts` with and without it, 3 alternating runs: 2,474 → 2,709 req/s at
 * 32 connections, CPU per request 0.622 → 0.581 ms, p99 36 → 31 ms. It costs at most about 48 MiB
 * more heap per process (three semi-spaces), under the chart's memory limits.
 */
export const SERVICE_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=32'];
