import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { FastifyAdapter } from '@bull-board/fastify';
import type { FastifyInstance } from 'fastify';
import { errorBody, GatewayError } from '@faregate/contracts/errors';
import type { IngressDeps } from './deps.ts';
import { defaultAuth } from './plugins/auth.ts';

export const QUEUE_BOARD_PATH = '/admin/queues';

/** The statuses the board's types list (its adapter sends any status it is given, 401 and 429 too). */
type BoardStatus = NonNullable<ReturnType<Parameters<FastifyAdapter['setErrorHandler']>[0]>['status']>;

/**
 * Bull Board at `/admin/queues`: every provider pool's BullMQ queue (jobs by state, their data and
 * errors, retry and clean), behind the admin token or an admin browser session (`/admin/login`).
 * Pools appear as they register; the board's writes need the gateway's own origin (see auth.ts).
 */
export async function registerQueueBoard(app: FastifyInstance, deps: IngressDeps): Promise<void> {
  const serverAdapter = new FastifyAdapter();
  serverAdapter.setBasePath(QUEUE_BOARD_PATH);
  const board = createBullBoard({
    queues: [],
    serverAdapter,
    options: { uiConfig: { boardTitle: 'Faregate queues' } },
  });
  // The board answers its routes' errors itself (its own scope's handler): the auth hook's refusals
  // keep their status and the gateway's error shape; anything else is a 500 that reveals nothing.
  serverAdapter.setErrorHandler((err) =>
    err instanceof GatewayError
      ? { status: err.status as BoardStatus, body: err.toBody() }
      : { status: 500, body: errorBody('internal_error', 'The queue dashboard had an error.') },
  );
  const shown = new Set<string>();
  const sync = () => {
    for (const pool of [...deps.config.EXPECTED_POOLS, ...deps.directory.providers]) {
      if (shown.has(pool)) continue;
      shown.add(pool);
      board.addQueue(new BullMQAdapter(deps.queues.get(pool), { displayName: pool }));
    }
  };
  await app.register(async (scope) => {
    defaultAuth(scope, 'admin');
    // Pools seen since the last look (the auth hook ran first: nobody else gets this far).
    scope.addHook('preHandler', async () => sync());
    await scope.register(serverAdapter.registerPlugin(), { prefix: QUEUE_BOARD_PATH });
  });
}
