import type { ChatRequest } from '@faregate/contracts/chat';
import { GatewayError } from '@faregate/contracts/errors';
import type { IngressDeps } from '../deps.ts';

/**
 * A door's reasoning parameter (Anthropic `thinking`, Responses `reasoning`) only goes to models the
 * catalog lists as reasoning models: any other candidate is a 400 naming the parameter and the
 * model, rather than a provider's error (or a silent plain answer) later.
 */
export function requireReasoning(deps: IngressDeps, chat: ChatRequest, param: string): void {
  for (const e of deps.router.plan(chat).entries) {
    if (e.capabilities.includes('reasoning')) continue;
    throw new GatewayError({
      code: 'invalid_request_error',
      message: `${param} is not supported by ${e.provider}/${e.id}: it is not a reasoning model. Leave ${param} out, or choose a model that reasons.`,
      param,
    });
  }
}
