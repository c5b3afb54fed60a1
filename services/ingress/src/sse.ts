import type { ThinkingBlock } from '@faregate/contracts/chat';
import type { Frame, ToolCallDelta } from '@faregate/contracts/frames';
import type { RouteStep } from '@faregate/contracts/route';
import { type FrameWriter, runningCall } from './doors/shared.ts';

/**
 * Translates a job's frames into OpenAI `chat.completion.chunk` SSE events, exactly as OpenAI
 * sends them: the role first, content / tool-call pieces, a finish chunk, a `choices: []` usage
 * chunk only when `include_usage` is set (and `usage: null` on every other chunk then), `[DONE]`.
 * `model` in every chunk is the model generating the stream (`provider/model`), known from the
 * `running` status frame that precedes the first content of each attempt. For a request that used
 * OpenAI's legacy `functions` (`legacyFunctions`), the tool call streams as `delta.function_call`.
 */
export class ChunkWriter implements FrameWriter {
  readonly #id: string;
  #model = '';
  readonly #created: number;
  readonly #includeUsage: boolean;
  readonly #legacyFunctions: boolean;
  #started = false;
  /** Per choice (n > 1 streams interleave them): what reached the caller. */
  readonly #choices = new Map<number, Sent>();

  /** The calls so far, the one the stream comes from last (for the response headers). */
  route: RouteStep[] = [];

  constructor(id: string, created: number, includeUsage: boolean, legacyFunctions = false) {
    this.#id = id;
    this.#created = created;
    this.#includeUsage = includeUsage;
    this.#legacyFunctions = legacyFunctions;
  }

  #sent(index: number) {
    let c = this.#choices.get(index);
    if (!c) {
      c = { role: false, text: '', tools: false, logprobs: false, open: '', blocks: [], blocksSent: 0 };
      this.#choices.set(index, c);
    }
    return c;
  }

  #chunk(
    index: number,
    delta: Record<string, unknown>,
    finish: string | null,
    logprobs: unknown = null,
    /** The stop sequence that ended the choice (its last chunk), as the whole answer's `stop_reason`. */
    stopReason?: string,
  ): string {
    const choice = { index, delta, logprobs, finish_reason: finish };
    const c: Record<string, unknown> = {
      id: this.#id,
      object: 'chat.completion.chunk',
      created: this.#created,
      model: this.#model,
      system_fingerprint: null,
      choices: [stopReason === undefined ? choice : { ...choice, stop_reason: stopReason }],
    };
    if (this.#includeUsage) c.usage = null;
    return `data: ${JSON.stringify(c)}\n\n`;
  }

  /**
   * A tool call's first delta, with the choice's role when none went out yet: OpenAI opens a tool
   * call answer with one chunk holding both (`role`, `content: null` and the call's name).
   */
  #opening<T extends object>(index: number, delta: T): T | (T & { role: 'assistant'; content: null }) {
    const sent = this.#sent(index);
    if (sent.role) return delta;
    sent.role = true;
    this.#started = true;
    return { role: 'assistant', content: null, ...delta };
  }

  #role(out: string[], index: number, withContent: boolean): void {
    const sent = this.#sent(index);
    if (sent.role) return;
    sent.role = true;
    this.#started = true;
    out.push(
      this.#chunk(
        index,
        withContent
          ? { role: 'assistant', content: '', refusal: null }
          : { role: 'assistant', content: null },
        null,
      ),
    );
  }

  /**
   * The choice's thinking blocks so far, if some have not gone out: every one, in order, in one
   * `delta.thinking_blocks` (the SDKs' stream helpers keep a delta's unknown field as its last
   * value, and a stream normally has one such chunk, so appending readers get each block once).
   * The caller sends them back with the assistant message, as a whole answer carries them.
   */
  #thinkingBlocks(out: string[], i: number): void {
    const sent = this.#sent(i);
    if (sent.blocks.length <= sent.blocksSent) return;
    this.#role(out, i, true);
    sent.blocksSent = sent.blocks.length;
    out.push(this.#chunk(i, { thinking_blocks: [...sent.blocks] }, null));
  }

  /**
   * Tool-call pieces as OpenAI's legacy mode streams its one call: `delta.function_call` with the
   * name and "" arguments first, then the argument pieces. Only the first call (index 0) is the
   * answer's (the done frame's `function_call` is the same one).
   */
  #functionCall(out: string[], i: number, pieces: ToolCallDelta[]): void {
    const sent = this.#sent(i);
    for (const p of pieces) {
      if (p.index !== 0) continue;
      const name = p.function?.name;
      const args = p.function?.arguments;
      if (name === undefined && !args) continue;
      if (name === undefined) this.#role(out, i, false);
      sent.tools = true;
      if (name !== undefined)
        out.push(this.#chunk(i, this.#opening(i, { function_call: { name, arguments: '' } }), null));
      if (args) out.push(this.#chunk(i, { function_call: { arguments: args } }, null));
    }
  }

  /** SSE text for one frame ('' when the frame has nothing for an OpenAI client). */
  frame(f: Frame): string {
    const out: string[] = [];
    const running = this.#started ? undefined : runningCall(f);
    if (running) {
      this.#model = running.model;
      this.route = running.route;
    } else if (f.type === 'delta') {
      const i = f.choice ?? 0;
      const sent = this.#sent(i);
      // Log probabilities go with the tokens they describe, as OpenAI sends them.
      const lp = f.logprobs;
      const contentLp = lp?.content?.length ? { content: lp.content, refusal: null } : null;
      const refusalLp = lp?.refusal?.length ? { content: null, refusal: lp.refusal } : null;
      if (contentLp || refusalLp) sent.logprobs = true;
      // Anthropic's thinking, block by block (a frame holds one block's at most): a signature
      // closes the block open, a redacted block comes whole.
      if (f.redacted_thinking) {
        sent.open = '';
        sent.blocks.push({ type: 'redacted_thinking', data: f.redacted_thinking });
      }
      if (f.reasoning) {
        this.#role(out, i, true);
        sent.open += f.reasoning;
        out.push(this.#chunk(i, { reasoning_content: f.reasoning }, null));
      }
      if (f.signature) {
        sent.blocks.push({ type: 'thinking', thinking: sent.open, signature: f.signature });
        sent.open = '';
      }
      // The thinking is over when the answer starts: its blocks go out then, all in one chunk.
      if (f.text || f.refusal || f.tool_calls?.length || contentLp) this.#thinkingBlocks(out, i);
      if (f.text) {
        this.#role(out, i, true);
        sent.text += f.text;
        out.push(this.#chunk(i, { content: f.text }, null, contentLp));
      } else if (contentLp) {
        this.#role(out, i, true);
        out.push(this.#chunk(i, { content: '' }, null, contentLp));
      }
      if (f.refusal) {
        this.#role(out, i, false);
        out.push(this.#chunk(i, { refusal: f.refusal }, null, refusalLp));
      }
      if (f.tool_calls?.length && this.#legacyFunctions) this.#functionCall(out, i, f.tool_calls);
      else if (f.tool_calls?.length) {
        sent.tools = true;
        out.push(this.#chunk(i, this.#opening(i, { tool_calls: f.tool_calls }), null));
      }
    } else if (f.type === 'done') {
      const r = f.result;
      // A stream whose content came only with the result (no running frame before it).
      if (!this.#started) this.#model = r.model;
      if (this.route.length === 0 && f.route) this.route = f.route;
      const choices = r.choices.length > 0 ? r.choices : [undefined];
      choices.forEach((choice, i) => {
        const sent = this.#sent(i);
        const content = choice?.message.content ?? '';
        // Top up anything the deltas did not carry (e.g. a provider that answered without streaming).
        if (content.length > sent.text.length && content.startsWith(sent.text)) {
          this.#role(out, i, true);
          const lp = !sent.logprobs && choice?.logprobs?.content ? choice.logprobs : null;
          out.push(this.#chunk(i, { content: content.slice(sent.text.length) }, null, lp));
        }
        // The result's blocks are the whole thinking (a provider that answered without streaming
        // sent no deltas of it): they go out if the deltas did not carry them all.
        const blocks = choice?.message.thinking_blocks ?? [];
        if (blocks.length > sent.blocksSent) {
          sent.blocks = [...blocks];
          this.#thinkingBlocks(out, i);
        }
        const legacyCall = choice?.message.function_call;
        if (!sent.tools && legacyCall)
          this.#functionCall(out, i, [
            { index: 0, function: { name: legacyCall.name, arguments: legacyCall.arguments } },
          ]);
        if (!sent.tools && choice?.message.tool_calls?.length) {
          out.push(
            this.#chunk(
              i,
              this.#opening(i, {
                tool_calls: choice.message.tool_calls.map((t, index) => ({ index, ...t })),
              }),
              null,
            ),
          );
        }
        this.#role(out, i, true);
        out.push(this.#chunk(i, {}, choice?.finish_reason ?? 'stop', null, choice?.stop_reason));
      });
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
    return this.#started;
  }

  error(code: string, message: string): string {
    return errorEvent(code, message);
  }
}

/** What reached the caller of one choice. */
interface Sent {
  role: boolean;
  text: string;
  tools: boolean;
  logprobs: boolean;
  /** The text of the thinking block open (Anthropic's: its signature closes it). */
  open: string;
  /** Anthropic's thinking blocks closed so far, in order, and how many went out. */
  blocks: ThinkingBlock[];
  blocksSent: number;
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
