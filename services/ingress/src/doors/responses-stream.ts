import type { ThinkingBlock } from '@faregate/contracts/chat';
import { type ErrorCode, errorBody } from '@faregate/contracts/errors';
import type { Frame } from '@faregate/contracts/frames';
import type { ResponsesLogprob, ResponsesRequest } from '@faregate/contracts/responses';
import type { RouteStep } from '@faregate/contracts/route';
import {
  asSummary,
  callItemId,
  envelope,
  messageId,
  outputText,
  reasoningId,
  reasoningItem,
  responsesLogprobs,
  toResponse,
  wantsLogprobs,
} from './responses-output.ts';
import { type FrameWriter, runningCall } from './shared.ts';

type Open =
  | { kind: 'message'; index: number; id: string; text: string; logprobs: ResponsesLogprob[] }
  | {
      kind: 'reasoning';
      index: number;
      id: string;
      text: string;
      /** Anthropic's thinking: the text of the block open, and the blocks closed, in order. */
      open: string;
      blocks: ThinkingBlock[];
    }
  | { kind: 'call'; index: number; id: string; callId: string; name: string; args: string; pipeline: number };

/**
 * A job's frames → the Responses stream: `response.created`, `response.in_progress`, then per output
 * item `response.output_item.added`, (`response.content_part.added`, `response.output_text.delta`…,
 * `response.output_text.done`, `response.content_part.done`) or (`response.function_call_arguments.delta`…,
 * `.done`), `response.output_item.done`, and `response.completed` (or `response.incomplete`) with the
 * whole response and its usage. Every event has its `sequence_number`, from 0.
 */
export class ResponsesStreamWriter implements FrameWriter {
  readonly #req: ResponsesRequest;
  readonly #id: string;
  readonly #created: number;
  #model = '';
  #seq = 0;
  #started = false;
  #open: Open | undefined;
  #items = 0;
  #sentText = '';
  readonly #calls = new Set<number>();
  route: RouteStep[] = [];

  constructor(req: ResponsesRequest, id: string, createdMs: number) {
    this.#req = req;
    this.#id = id;
    this.#created = Math.floor(createdMs / 1000);
  }

  get started(): boolean {
    return this.#started;
  }

  #event(type: string, data: Record<string, unknown>): string {
    return `event: ${type}\ndata: ${JSON.stringify({ type, ...data, sequence_number: this.#seq++ })}\n\n`;
  }

  #start(out: string[]): void {
    if (this.#started) return;
    this.#started = true;
    const response = {
      ...envelope(this.#req, this.#id, this.#created, this.#model),
      completed_at: null,
      status: 'in_progress',
      incomplete_details: null,
      output: [],
      usage: null,
    };
    out.push(
      this.#event('response.created', { response }),
      this.#event('response.in_progress', { response }),
    );
  }

  /** Closes the open item; `status`: the message's, as the response's (`incomplete` when cut short). */
  #close(out: string[], status: 'completed' | 'incomplete' = 'completed'): void {
    const o = this.#open;
    if (!o) return;
    this.#open = undefined;
    if (o.kind === 'reasoning') {
      const summary = asSummary(this.#req);
      if (summary) {
        const at = { item_id: o.id, output_index: o.index, summary_index: 0 };
        out.push(
          this.#event('response.reasoning_summary_text.done', { ...at, text: o.text }),
          this.#event('response.reasoning_summary_part.done', {
            ...at,
            part: { type: 'summary_text', text: o.text },
          }),
        );
      } else {
        const at = { item_id: o.id, output_index: o.index, content_index: 0 };
        out.push(
          this.#event('response.reasoning_text.done', { ...at, text: o.text }),
          this.#event('response.content_part.done', {
            ...at,
            part: { type: 'reasoning_text', text: o.text },
          }),
        );
      }
      out.push(
        this.#event('response.output_item.done', {
          output_index: o.index,
          item: reasoningItem(o.id, o.text, 'completed', summary, o.blocks),
        }),
      );
    } else if (o.kind === 'message') {
      const at = { item_id: o.id, output_index: o.index, content_index: 0 };
      out.push(
        this.#event('response.output_text.done', { ...at, text: o.text, logprobs: o.logprobs }),
        this.#event('response.content_part.done', { ...at, part: outputText(o.text, o.logprobs) }),
        this.#event('response.output_item.done', {
          output_index: o.index,
          item: {
            id: o.id,
            type: 'message',
            status,
            role: 'assistant',
            content: [outputText(o.text, o.logprobs)],
          },
        }),
      );
    } else {
      out.push(
        this.#event('response.function_call_arguments.done', {
          item_id: o.id,
          output_index: o.index,
          name: o.name,
          arguments: o.args,
        }),
        this.#event('response.output_item.done', {
          output_index: o.index,
          item: {
            id: o.id,
            type: 'function_call',
            status: 'completed',
            call_id: o.callId,
            name: o.name,
            arguments: o.args,
          },
        }),
      );
    }
  }

  #text(out: string[], delta: string, logprobs: ResponsesLogprob[] = []): void {
    this.#start(out);
    let o = this.#open;
    if (o?.kind !== 'message') {
      this.#close(out);
      o = { kind: 'message', index: this.#items++, id: messageId(this.#id), text: '', logprobs: [] };
      this.#open = o;
      out.push(
        this.#event('response.output_item.added', {
          output_index: o.index,
          item: { id: o.id, type: 'message', status: 'in_progress', role: 'assistant', content: [] },
        }),
        this.#event('response.content_part.added', {
          item_id: o.id,
          output_index: o.index,
          content_index: 0,
          part: outputText(''),
        }),
      );
    }
    o.text += delta;
    o.logprobs.push(...logprobs);
    this.#sentText += delta;
    out.push(
      this.#event('response.output_text.delta', {
        item_id: o.id,
        output_index: o.index,
        content_index: 0,
        delta,
        logprobs,
      }),
    );
  }

  #reasoning(out: string[], delta: string): void {
    const o = this.#reasoningItem(out);
    if (delta === '') return;
    o.open += delta;
    o.text += delta;
    out.push(
      asSummary(this.#req)
        ? this.#event('response.reasoning_summary_text.delta', {
            item_id: o.id,
            output_index: o.index,
            summary_index: 0,
            delta,
          })
        : this.#event('response.reasoning_text.delta', {
            item_id: o.id,
            output_index: o.index,
            content_index: 0,
            delta,
          }),
    );
  }

  /** The reasoning item open, opened if need be (one item holds every thinking block). */
  #reasoningItem(out: string[]): Extract<Open, { kind: 'reasoning' }> {
    this.#start(out);
    let o = this.#open;
    if (o?.kind !== 'reasoning') {
      this.#close(out);
      o = {
        kind: 'reasoning',
        index: this.#items++,
        id: reasoningId(this.#id),
        text: '',
        open: '',
        blocks: [],
      };
      this.#open = o;
      const summary = asSummary(this.#req);
      out.push(
        this.#event('response.output_item.added', {
          output_index: o.index,
          item: reasoningItem(o.id, '', 'in_progress', summary),
        }),
        summary
          ? this.#event('response.reasoning_summary_part.added', {
              item_id: o.id,
              output_index: o.index,
              summary_index: 0,
              part: { type: 'summary_text', text: '' },
            })
          : this.#event('response.content_part.added', {
              item_id: o.id,
              output_index: o.index,
              content_index: 0,
              part: { type: 'reasoning_text', text: '' },
            }),
      );
    }
    return o;
  }

  #call(out: string[], pipeline: number, callId: string, name: string, args: string): void {
    this.#start(out);
    let o = this.#open;
    if (!(o?.kind === 'call' && o.pipeline === pipeline)) {
      this.#close(out);
      this.#calls.add(pipeline);
      o = {
        kind: 'call',
        index: this.#items++,
        id: callItemId(this.#id, pipeline),
        callId,
        name,
        args: '',
        pipeline,
      };
      this.#open = o;
      out.push(
        this.#event('response.output_item.added', {
          output_index: o.index,
          item: {
            id: o.id,
            type: 'function_call',
            status: 'in_progress',
            call_id: callId,
            name,
            arguments: '',
          },
        }),
      );
    }
    if (args === '') return;
    o.args += args;
    out.push(
      this.#event('response.function_call_arguments.delta', {
        item_id: o.id,
        output_index: o.index,
        delta: args,
      }),
    );
  }

  frame(f: Frame): string {
    const out: string[] = [];
    const running = this.#started ? undefined : runningCall(f);
    if (running) {
      this.#model = running.model;
      this.route = running.route;
    } else if (f.type === 'delta') {
      // Only the first choice: this door has no `n`.
      if ((f.choice ?? 0) !== 0) return '';
      // Anthropic's thinking, block by block (a frame holds one block's at most): a redacted block
      // whole, a thinking block's text, then its signature, which closes it.
      if (f.redacted_thinking) {
        const o = this.#reasoningItem(out);
        o.open = '';
        o.blocks.push({ type: 'redacted_thinking', data: f.redacted_thinking });
      }
      if (f.reasoning) this.#reasoning(out, f.reasoning);
      if (f.signature) {
        const o = this.#reasoningItem(out);
        o.blocks.push({ type: 'thinking', thinking: o.open, signature: f.signature });
        o.open = '';
      }
      const lp = wantsLogprobs(this.#req) ? f.logprobs : undefined;
      if (f.text) this.#text(out, f.text, responsesLogprobs(lp?.content));
      if (f.refusal) this.#text(out, f.refusal, responsesLogprobs(lp?.refusal));
      for (const t of f.tool_calls ?? []) {
        if (!this.#calls.has(t.index) && !(t.id && t.function?.name)) continue;
        this.#call(out, t.index, t.id ?? '', t.function?.name ?? '', t.function?.arguments ?? '');
      }
    } else if (f.type === 'done') {
      const r = f.result;
      if (!this.#started) this.#model = r.model;
      if (this.route.length === 0 && f.route) this.route = f.route;
      this.#start(out);
      const m = r.choices[0]?.message;
      const content = m?.content ?? '';
      if (content.length > this.#sentText.length && content.startsWith(this.#sentText))
        this.#text(out, content.slice(this.#sentText.length));
      (m?.tool_calls ?? []).forEach((t, i) => {
        if (!this.#calls.has(i)) this.#call(out, i, t.id, t.function.name, t.function.arguments);
      });
      const response = toResponse(this.#req, { ...r, id: this.#id, created: this.#created }, f.at);
      this.#close(out, response.status === 'incomplete' ? 'incomplete' : 'completed');
      out.push(
        this.#event(response.status === 'completed' ? 'response.completed' : 'response.incomplete', {
          response,
        }),
      );
    } else if (f.type === 'error') {
      out.push(this.error(f.error.code, f.error.message));
    }
    return out.join('');
  }

  /** OpenAI's `error` event: the SDK raises it as an APIError. */
  error(code: ErrorCode, message: string): string {
    const e = errorBody(code, message).error;
    return this.#event('error', { code: e.code, message, param: null, error: e });
  }
}
