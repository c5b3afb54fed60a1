/**
 * Batches with their progress need an admin view of the OpenAI Batches API (`/v1/batches`, being
 * built); until it lands this panel says so rather than show nothing.
 */
export function Batches() {
  return (
    <section aria-labelledby="batches-h">
      <h2 id="batches-h">Batches</h2>
      <p class="placeholder">
        Batch progress appears here once the Batches API (<code>/v1/batches</code>) has an admin listing.
        Until then, a batch's progress is at <code>GET /v1/batches/&#123;id&#125;</code> with its owner's key,
        and its lines run as ordinary jobs: see the pools' queues here and in the{' '}
        <a href="/admin/queues">queue dashboard</a>.
      </p>
    </section>
  );
}
