import type { IncomingMessage, ServerResponse } from 'node:http';
import { readJson, sendJson } from './http.ts';
import type { ConfigPatch, FakeState } from './state.ts';
import { FAKE_PROVIDERS, type FakeProviderId, type Fault } from './types.ts';

/**
 * The control API (`/_control/*`): script faults, change settings, read the call log, reset.
 * Errors are plain `{ error: message }` with status 400: this API is ours, not a provider's.
 */
export async function serveControl(
  state: FakeState,
  req: IncomingMessage,
  res: ServerResponse,
  url: URL,
): Promise<void> {
  const route = `${req.method} ${url.pathname}`;
  const ok = (body: unknown = { ok: true }) => sendJson(res, 200, JSON.stringify(body));
  try {
    switch (route) {
      case 'GET /_control/calls':
        return ok(state.calls);
      case 'DELETE /_control/calls':
        state.calls = [];
        return ok();
      case 'POST /_control/faults': {
        const b = (await readJson(req)) as { provider?: FakeProviderId; faults?: Fault[]; model?: string };
        state.script(b?.provider as FakeProviderId, b?.faults as Fault[], b?.model);
        return ok();
      }
      case 'DELETE /_control/faults': {
        const p = url.searchParams.get('provider');
        if (p !== null && !FAKE_PROVIDERS.includes(p as FakeProviderId))
          throw new Error(`unknown provider ${p}`);
        state.clearFaults((p ?? undefined) as FakeProviderId | undefined);
        return ok();
      }
      case 'GET /_control/faults':
        return ok(state.faults);
      case 'POST /_control/config':
        state.configure(((await readJson(req)) ?? {}) as ConfigPatch);
        return ok(state.config);
      case 'GET /_control/config':
        return ok(state.config);
      case 'POST /_control/reset':
        req.resume();
        state.reset();
        return ok();
      default:
        req.resume();
        return sendJson(res, 404, JSON.stringify({ error: `no control route ${route}` }));
    }
  } catch (e) {
    sendJson(res, 400, JSON.stringify({ error: (e as Error).message }));
  }
}
