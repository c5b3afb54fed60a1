import type { JobData } from '@faregate/contracts/jobs';
import type { ProviderQueues } from '@faregate/queue/queues';

/**
 * The fallback hop: the job, handed to plan candidate `hop` on that provider's queue. Its job id is
 * deterministic (`<id>-h<hop>`), so a worker that dies after this add and re-runs adds nothing
 * twice. The next hop counts its attempts from 1 (no `attemptBase`).
 */
export async function queueHop(
  queues: Pick<ProviderQueues, 'add'>,
  data: JobData,
  hop: number,
  attempts: JobData['attempts'],
): Promise<void> {
  const { attemptBase: _, ...hopData } = data;
  await queues.add({ ...hopData, hop, attempts });
}
