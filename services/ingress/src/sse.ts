import type { Frame } from '@faregate/contracts/frames';
import type { RouteStep } from '@faregate/contracts/route';
import { type FrameWriter, runningCall } from './doors/shared.ts';

/**
 * Translates a job's frames into OpenAI `chat.completion.chunk` SSE events, exactly as OpenAI
 * sends them: the role first, content / tool-call pieces, a finish chunk, a `choices: []` usage
 * chunk only when `include_usage` is set (and `usage: null` on every other chunk then), `[DONE]`.
 * `model` in every chunk is the model generating the stream (`provider/model`), known from the
 * `running` status frame that precedes the first content of each attempt.
 */
export class ChunkWriter implements FrameWriter {
  readonly #id: string;
  #model = '';
  readonly #created: number;
  readonly #includeUsage: boolean;
  #roleSent = false;
  /** Text already sent, to top up from the final result if any delta was missed. */
  sentText = '';
  sentTools = false;

  /** The calls so far, the one the stream comes from last (for the response headers). */
  route: RouteStep[] = [];

  constructor(id: string, created: number, includeUsage: boolean) {
    this.#id = id;
    this.#created = created;
    this.#includeUsage = includeUsage;
  }

  #chunk(delta: Record<string, unknown>, finish: string | null): string {
    const c: Record<string, unknown> = {
      id: this.#id,
      object: 'chat.completion.chunk',
      created: this.#created,
      model: this.#model,
      system_fingerprint: null,
      choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
    };
    if (this.#includeUsage) c.usage = null;
    return `data: ${JSON.stringify(c)}\n\n`;
  }

  #role(out: string[], withContent: boolean): void {
    if (this.#roleSent) return;
    this.#roleSent = true;
    out.push(
      this.#chunk(
        withContent
          ? { role: 'assistant', content: '', refusal: null }
          : { role: 'assistant', content: null },
        null,
      ),
    );
  }

  /** SSE text for one frame ('' when the frame has nothing for an OpenAI client). */
  frame(f: Frame): string {
    const out: string[] = [];
    const running = this.#roleSent ? undefined : runningCall(f);
    if (running) {
      this.#model = running.model;
      this.route = running.route;
    } else if (f.type === 'delta') {
      if (f.text) {
        this.#role(out, true);
        this.sentText += f.text;
        out.push(this.#chunk({ content: f.text }, null));
      }
      if (f.refusal) {
        this.#role(out, false);
        out.push(this.#chunk({ refusal: f.refusal }, null));
      }
      if (f.tool_calls?.length) {
        this.#role(out, false);
        this.sentTools = true;
        out.push(this.#chunk({ tool_calls: f.tool_calls }, null));
      }
    } else if (f.type === 'done') {
      const r = f.result;
      // A stream whose content came only with the result (no running frame before it).
      if (!this.#roleSent) this.#model = r.model;
      if (this.route.length === 0 && f.route) this.route = f.route;
      const choice = r.choices[0];
      const content = choice?.message.content ?? '';
      // Top up anything the deltas did not carry (e.g. a provider that answered without streaming).
      if (content.length > this.sentText.length && content.startsWith(this.sentText)) {
        this.#role(out, true);
        out.push(this.#chunk({ content: content.slice(this.sentText.length) }, null));
      }
      if (!this.sentTools && choice?.message.tool_calls?.length) {
        this.#role(out, false);
        out.push(
          this.#chunk({ tool_calls: choice.message.tool_calls.map((t, index) => ({ index, ...t })) }, null),
        );
      }
      this.#role(out, true);
      out.push(this.#chunk({}, choice?.finish_reason ?? 'stop'));
      if (this.#includeUsage) {
        out.push(
          `data: ${JSON.stringify({
            id: this.#id,
            object: 'chat.completion.chunk',
            created: this.#created,
            model: this.#model,
            system_fingerprint: null,
            choices: [],
            usage: r.usage,
          })}\n\n`,
        );
      }
      out.push('data: [DONE]\n\n');
    } else if (f.type === 'error') {
      out.push(errorEvent(f.error.code, f.error.message, f.error.attempts));
    }
    return out.join('');
  }

  get started(): boolean {
    return this.#roleSent;
  }

  error(code: string, message: string): string {
    return errorEvent(code, message);
  }
}

/** An in-band error after the 200 status: the official SDK raises APIError for a data payload with `error`. */
export function errorEvent(code: string, message: string, attempts?: RouteStep[]): string {
  const type =
    code === 'rate_limit_exceeded'
      ? 'rate_limit_error'
      : code.includes('invalid')
        ? 'invalid_request_error'
        : 'server_error';
  const error = { message, type, param: null, code, ...(attempts?.length ? { attempts } : {}) };
  return `data: ${JSON.stringify({ error })}\n\n`;
}
