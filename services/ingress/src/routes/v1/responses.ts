import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import type { ChatRequest } from '@faregate/contracts/chat';
import { GatewayError } from '@faregate/contracts/errors';
import { ResponsesRequest } from '@faregate/contracts/responses';
import type { IngressDeps } from '../../deps.ts';
import { requestBody } from '../../request-body.ts';
import { RESPONSES_PARAMS, responsesDoor, toChatRequest } from '../../doors/responses.ts';
import { type DoorNames, inDoorTerms } from '../../doors/shared.ts';
import { serveChat } from './chat.ts';

export const ResponsesBody = requestBody(['model', 'input'], ResponsesRequest);

/**
 * A Responses request as the pipeline's chat request (the live door's and a batch line's), the
 * parameter that asks for reasoning, if any (only reasoning models serve it), and the caller's names
 * of what the pipeline may refuse (for `inDoorTerms`).
 */
export function responsesChat(body: ResponsesRequest): {
  chat: ChatRequest;
  reasoning: string | undefined;
  names: DoorNames;
} {
  const names: DoorNames = { ...RESPONSES_PARAMS };
  const chat = toChatRequest(body, names);
  const reasoning = chat.reasoning_effort
    ? 'reasoning.effort'
    : body.reasoning?.summary != null
      ? 'reasoning.summary'
      : undefined;
  return { chat, reasoning, names };
}

/**
 * OpenAI's Responses API as a door onto the one pipeline, stateless: `POST /v1/responses` (whole or
 * streamed) for any provider's model. What needs stored responses is refused with a 400.
 */
export async function responsesRoutes(app: FastifyInstance, deps: IngressDeps): Promise<void> {
  const r = app.withTypeProvider<ZodTypeProvider>();
  r.post('/v1/responses', { schema: { body: ResponsesBody } }, async (req, reply) => {
    const body = req.body;
    const { chat, reasoning, names } = responsesChat(body);
    return serveChat(deps, req, reply, chat, responsesDoor(body), { reasoning }).catch((e: unknown) => {
      throw inDoorTerms(e, names);
    });
  });
  const stored = async () => {
    throw new GatewayError({
      code: 'invalid_request_error',
      message:
        'Stored responses are not supported: this gateway does not keep responses (store is always false).',
      param: 'response_id',
    });
  };
  r.get('/v1/responses/:id', stored);
  r.delete('/v1/responses/:id', stored);
  r.post('/v1/responses/:id/cancel', stored);
  r.get('/v1/responses/:id/input_items', stored);
}
