import { createParser } from 'eventsource-parser';
import { errorFromBody, FaregateConnectionError } from './errors.ts';
import { ChatCompletionChunk } from '@faregate/contracts/chat';

/**
 * An OpenAI-style `stream: true` response: iterate it for `chat.completion.chunk`s. An in-band
 * `{"error": …}` event (a failure after the 200 status) is thrown as a FaregateError, and a stream
 * that ends without `[DONE]` throws a FaregateConnectionError, so a truncated answer never looks
 * complete. Leaving the loop early (break, throw) or `abort()` closes the connection, which stops
 * generation on the gateway (what was generated is billed).
 */
export class ChatStream implements AsyncIterable<ChatCompletionChunk> {
  /** The gateway's request id (`x-request-id`), also the job id. */
  readonly requestId: string | undefined;
  readonly response: Response;
  readonly #controller: AbortController;
  #used = false;

  constructor(response: Response, controller: AbortController) {
    this.response = response;
    this.requestId = response.headers.get('x-request-id') ?? undefined;
    this.#controller = controller;
  }

  /** Stops reading and closes the connection. */
  abort(): void {
    this.#controller.abort();
  }

  [Symbol.asyncIterator](): AsyncIterator<ChatCompletionChunk> {
    if (this.#used) throw new Error('A ChatStream can be iterated only once.');
    this.#used = true;
    return chunks(this.response, this.requestId, this.#controller);
  }
}

async function* chunks(
  res: Response,
  requestId: string | undefined,
  controller: AbortController,
): AsyncGenerator<ChatCompletionChunk> {
  if (!res.body) throw new FaregateConnectionError('The stream response has no body.');
  const events: string[] = [];
  const parser = createParser({ onEvent: (e) => events.push(e.data) });
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  try {
    for (;;) {
      let r: Awaited<ReturnType<typeof reader.read>>;
      try {
        r = await reader.read();
      } catch (e) {
        if (controller.signal.aborted) return;
        throw new FaregateConnectionError('The stream was interrupted.', e);
      }
      if (r.done) break;
      parser.feed(r.value);
      // Events are taken in order; splice once per read keeps this linear.
      const batch = events.splice(0);
      for (const data of batch) {
        if (data === '[DONE]') return;
        let parsed: unknown;
        try {
          parsed = JSON.parse(data);
        } catch (e) {
          throw new FaregateConnectionError('The stream sent an event that is not JSON.', e);
        }
        if (typeof parsed === 'object' && parsed !== null && 'error' in parsed) {
          throw errorFromBody(parsed, undefined, requestId);
        }
        const chunk = ChatCompletionChunk.safeParse(parsed);
        if (!chunk.success) {
          throw new FaregateConnectionError(
            'The stream sent an event that is not a chat.completion.chunk.',
            chunk.error,
          );
        }
        yield chunk.data;
      }
    }
    if (controller.signal.aborted) return;
    throw new FaregateConnectionError('The stream ended before [DONE]: the answer is incomplete.');
  } finally {
    // Early exit: cancelling the body closes the HTTP connection, which tells the gateway to stop.
    await reader.cancel().catch(() => {});
    controller.abort();
  }
}
