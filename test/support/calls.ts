import { until } from '@faregate/testing/env';
import type { Stack } from './stack.ts';

/** An admin API call with the stack's admin token; the answer's JSON body. */
export async function adminCall(stack: Stack, method: string, path: string, body?: unknown) {
  const r = await fetch(`${stack.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${stack.adminToken}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return (await r.json()) as Record<string, unknown>;
}

/** What billing settled for a request's final call, once it has. */
export async function finalUsage(stack: Stack, requestId: string) {
  let row: { input_tokens: number; output_tokens: number } | undefined;
  await until(
    async () => {
      const r = await stack.sql.query(
        'SELECT input_tokens, output_tokens FROM usage_events WHERE request_id = $1 AND final',
        [requestId],
      );
      row = r.rows[0];
      return row !== undefined;
    },
    { timeoutMs: 15_000, what: `usage of ${requestId}` },
  );
  return row as { input_tokens: number; output_tokens: number };
}
