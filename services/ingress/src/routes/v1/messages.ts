import type { FastifyInstance, FastifyRequest } from 'fastify';
import { GatewayError } from '@faregate/contracts/errors';
import { anthropicDetails } from '../../plugins/errors.ts';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { AnthropicCountTokensRequest, AnthropicRequest } from '@faregate/contracts/anthropic';
import type { ChatRequest } from '@faregate/contracts/chat';
import type { IngressDeps } from '../../deps.ts';
import type { DoorAsks } from '../../routing/router.ts';
import { requestBody } from '../../request-body.ts';
import {
  type DoorNames,
  MESSAGES_PARAMS,
  messagesDoor,
  promptOf,
  toChatRequest,
} from '../../doors/messages.ts';
import { inDoorTerms } from '../../doors/shared.ts';
import { principalOf, requireScope } from '../../plugins/auth.ts';
import { serveChat } from './chat.ts';
import { keepPermitted } from '../../submit.ts';

const MessagesBody = requestBody(['model', 'messages', 'max_tokens'], AnthropicRequest);
const CountTokensBody = requestBody(['model', 'messages'], AnthropicCountTokensRequest);

/**
 * Anthropic's message threads (`thread`: the server keeps the conversation between turns) are not
 * held here. Refused as Anthropic refuses a request it cannot thread (`error.details.error_code`
 * `thread_unsupported_request`), on which the SDK's tool runner goes on without a thread, sending
 * the whole conversation each turn: `@anthropic-ai/sdk`'s `toolRunner()` threads by default.
 */
async function refuseThread(req: FastifyRequest): Promise<void> {
  const body = req.body as Record<string, unknown> | null | undefined;
  if (body === null || typeof body !== 'object' || !Object.hasOwn(body, 'thread')) return;
  const err = new GatewayError({
    code: 'invalid_request_error',
    message:
      'thread: message threads are not supported by this gateway; send the whole conversation in `messages`.',
    param: 'thread',
  });
  anthropicDetails.set(err, { error_code: 'thread_unsupported_request', unsupported: ['thread'] });
  throw err;
}

/**
 * What the request asks of its route (a fallback that cannot give it is left out): `thinking` asks
 * for reasoning; a last assistant turn with content is a prefill the answer goes on from (the door
 * leaves an empty one out), which only Anthropic models do.
 */
const asksOf = (body: { messages: readonly unknown[] }, chat: ChatRequest): DoorAsks => ({
  reasoning: chat.reasoning_effort ? 'thinking' : undefined,
  prefill: chat.messages.at(-1)?.role === 'assistant' ? `messages.${body.messages.length - 1}` : undefined,
});

/**
 * Anthropic's Messages API as a door onto the one pipeline: `POST /v1/messages` (whole or streamed)
 * for any provider's model, and `POST /v1/messages/count_tokens`. Every error on these routes is in
 * Anthropic's shape (`config.errorShape`), auth failures and invalid bodies included.
 */
export async function messagesRoutes(app: FastifyInstance, deps: IngressDeps): Promise<void> {
  const r = app.withTypeProvider<ZodTypeProvider>();
  r.post(
    '/v1/messages',
    { schema: { body: MessagesBody }, config: { errorShape: 'anthropic' }, preValidation: refuseThread },
    async (req, reply) => {
      // The caller's names of what the pipeline may refuse: fields, and the content parts' paths.
      const names: DoorNames = { ...MESSAGES_PARAMS };
      const chat = toChatRequest(req.body, names);
      return serveChat(deps, req, reply, chat, messagesDoor(), asksOf(req.body, chat)).catch((e: unknown) => {
        throw inDoorTerms(e, names);
      });
    },
  );
  // The catalog's one estimator (the bound admission holds on): never below what a provider bills.
  r.post(
    '/v1/messages/count_tokens',
    { schema: { body: CountTokensBody }, config: { errorShape: 'anthropic' } },
    async (req) => {
      const principal = principalOf(req);
      requireScope(principal, 'chat');
      const names: DoorNames = { ...MESSAGES_PARAMS };
      const chat = promptOf(req.body, names);
      try {
        const route = deps.router.plan(chat, asksOf(req.body, chat));
        // A key limited by `allowed_models` counts only for models it may call.
        keepPermitted(deps, principal, route, chat.model);
        return { input_tokens: route.inputTokensBound };
      } catch (e) {
        throw inDoorTerms(e, names);
      }
    },
  );
}
