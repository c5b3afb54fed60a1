import { PoolList, type PoolView } from '@faregate/contracts/admin-views';
import { api } from './api.ts';
import { Head, Problem } from './parts.tsx';
import { usePolled } from './poll.ts';

const REFRESH_MS = 2_000;

function age(ms: number | null): string {
  if (ms === null) return '—';
  if (ms < 1_000) return `${ms} ms`;
  if (ms < 60_000) return `${(ms / 1_000).toFixed(1)} s`;
  if (ms < 3_600_000) return `${Math.floor(ms / 60_000)} min`;
  return `${(ms / 3_600_000).toFixed(1)} h`;
}

function Circuit({ state }: { state: PoolView['circuit'] }) {
  return <span class={`badge circuit-${state}`}>{state}</span>;
}

/** Live pools: queue depth, oldest job, in-flight and workers; circuit and recent failures. */
export function Pools() {
  const pools = usePolled(() => api.get(PoolList, '/admin/v1/pools'), REFRESH_MS);
  const data = pools.data?.data;
  return (
    <section aria-labelledby="pools-h">
      <h2 id="pools-h">Pools</h2>
      <p class="hint">Every {REFRESH_MS / 1000} s. Queued counts the BullMQ queue and the fast lane.</p>
      <Problem text={pools.error} />
      {data && data.length === 0 && <p>No pool has registered yet: start a worker.</p>}
      {data && data.length > 0 && (
        <table class="pools">
          <Head
            cols={[
              'Pool',
              'Workers',
              'Queued',
              'Delayed',
              'Oldest waiting',
              'In flight',
              'Circuit',
              'Failures (1 h)',
              'Failed jobs',
            ]}
          />
          <tbody>
            {data.map((p) => (
              <tr key={p.id} data-pool={p.id}>
                <th scope="row">
                  {p.id} {!p.live && <span class="badge down">down</span>}
                </th>
                <td data-col="workers">{p.workers}</td>
                <td data-col="queued">{p.queued}</td>
                <td data-col="delayed">{p.delayed}</td>
                <td data-col="oldest">{age(p.oldest_job_age_ms)}</td>
                <td data-col="in-flight">{p.in_flight}</td>
                <td data-col="circuit">
                  <Circuit state={p.circuit} />
                </td>
                <td data-col="failures">{p.failures_last_hour}</td>
                <td data-col="failed-jobs">{p.failed_jobs}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {data?.some((p) => p.recent_failures.length > 0) && (
        <>
          <h3>Recent failed jobs</h3>
          <ul class="failures">
            {data.flatMap((p) =>
              p.recent_failures.map((f) => (
                <li key={`${p.id}:${f.job_id}`}>
                  <strong>{p.id}</strong> {f.failed_at ?? ''} <code>{f.model ?? ''}</code> {f.reason ?? ''}
                </li>
              )),
            )}
          </ul>
        </>
      )}
    </section>
  );
}
