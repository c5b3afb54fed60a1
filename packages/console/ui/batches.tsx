import { BatchList, type BatchView } from '@faregate/contracts/admin-views';
import { api } from './api.ts';
import { Head, Problem } from './parts.tsx';
import { usePolled } from './poll.ts';

const REFRESH_MS = 3_000;

const when = (s: number | null) =>
  s === null ? '—' : new Date(s * 1000).toISOString().replace('T', ' ').slice(0, 19);

function Progress({ b }: { b: BatchView }) {
  const done = b.completed + b.failed;
  return (
    <>
      <progress max={Math.max(b.total, 1)} value={done} aria-label={`${b.id} progress`} />{' '}
      <span data-col="done">
        {done}/{b.total}
      </span>
      {b.failed > 0 && <span class="error"> ({b.failed} failed)</span>}
    </>
  );
}

/** The Batch API's batches of every tenant, newest first, with their progress. */
export function Batches() {
  const batches = usePolled(() => api.get(BatchList, '/admin/v1/batches'), REFRESH_MS);
  const data = batches.data?.data;
  return (
    <section aria-labelledby="batches-h">
      <h2 id="batches-h">Batches</h2>
      <p class="hint">
        Batches of the Batch API (<code>/v1/batches</code>), every {REFRESH_MS / 1000} s. Their lines run as
        ordinary jobs at a lower priority: see the pools.
      </p>
      <Problem text={batches.error} />
      {data && data.length === 0 && <p>No batch yet.</p>}
      {data && data.length > 0 && (
        <table class="batches">
          <Head cols={['Batch', 'Account', 'Status', 'Progress', 'Created', 'Ended', 'Expires']} />
          <tbody>
            {data.map((b) => (
              <tr key={b.id} data-batch={b.id}>
                <th scope="row">
                  <code>{b.id}</code>
                </th>
                <td>{b.account_name ?? b.account_id}</td>
                <td data-col="status">
                  <span class={`badge status-${b.status}`}>{b.status}</span>
                </td>
                <td>
                  <Progress b={b} />
                </td>
                <td>{when(b.created_at)}</td>
                <td>{when(b.ended_at)}</td>
                <td>{when(b.expires_at)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
