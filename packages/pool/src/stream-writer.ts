import type { TokenLogprob } from '@faregate/contracts/chat';
import type { FrameBody } from '@faregate/contracts/frames';
import type { ToolCallDelta } from '@faregate/contracts/frames';
import type { ClaimRecord, FrameStore, LogCursor } from '@faregate/queue/frame-store';

type DeltaBody = Extract<FrameBody, { type: 'delta' }>;

export interface StreamWriterOptions {
  /**
   * The request asked for logprobs. An adapter emits a chunk's `text` and then its `logprobs`
   * (synchronously, from one upstream chunk), so content then waits for the end of the current
   * turn of the event loop (a microtask: no I/O or timer comes between) and goes out with the
   * log probabilities of that text. Without it content goes out at once; the writer also turns
   * this on by itself at the first `logprobs` it is given.
   */
  logprobs?: boolean;
  /** The job's log as this attempt, its only writer, knows it (FrameStore's LogCursor). */
  cursor?: LogCursor;
}

/**
 * Writes one attempt's frames in order, coalescing deltas without a fixed timer: a frame is sent
 * as soon as no write is in flight, and whatever arrives meanwhile is merged into the next one.
 * The first token therefore never waits for a window, and a fast stream costs few Redis calls.
 * With logprobs, a delta carries its text together with that text's logprobs (see
 * StreamWriterOptions.logprobs).
 */
export class StreamWriter {
  readonly #store: FrameStore;
  readonly #jobId: string;
  readonly #owner: string;
  readonly #ttlMs: number;
  readonly #replyTo: string | undefined;
  #queue: FrameBody[] = [];
  #inflight: Promise<void> | undefined;
  #error: unknown;
  /** Content waits for the end of the turn, for the logprobs of the same upstream chunk. */
  #hold: boolean;
  /** A microtask that sends what is held is queued. */
  #soon = false;
  /** The prompt's counts told before the answer, for the first delta frame (`prompt`). */
  #prompt: DeltaBody['prompt'];
  /** A delta frame was made: a later `prompt` is too late for the stream's start. */
  #deltaMade = false;
  /** Text frames written by this attempt (a retry after this must send `reset`). */
  wroteContent = false;
  /**
   * A write with content succeeded (it is in the job's log, so followers have it or will), or its
   * content was handed to the caller in this process before it was (LogCursor); or a write handed
   * over failed, which ends that caller: another attempt's answer would reach nobody.
   */
  storedContent = false;
  writes = 0;

  readonly #claim: ClaimRecord | undefined;
  readonly #cursor: LogCursor | undefined;

  /** `claim`: the attempt has not claimed the job; its first write does (see FrameStore.append). */
  constructor(
    store: FrameStore,
    jobId: string,
    owner: string,
    ttlMs: number,
    replyTo?: string,
    claim?: ClaimRecord,
    opts: StreamWriterOptions = {},
  ) {
    this.#store = store;
    this.#jobId = jobId;
    this.#owner = owner;
    this.#ttlMs = ttlMs;
    this.#replyTo = replyTo;
    this.#claim = claim;
    this.#hold = opts.logprobs === true;
    this.#cursor = opts.cursor;
  }

  /** Set when a write failed (e.g. NOTOWNER: another attempt took over). */
  get error(): unknown {
    return this.#error;
  }

  push(frame: FrameBody): void {
    this.#queue.push(frame);
    this.#kick();
  }

  /**
   * Queues a frame without sending it: it goes out with the next frame pushed, at `release()`, or
   * at `flush()`. Used for the frames that open an attempt, so the first token carries them in the
   * same write instead of queueing behind them.
   */
  defer(frame: FrameBody): void {
    this.#queue.push(frame);
  }

  /** Sends what `defer` queued (if nothing is being written, else it follows the write in flight). */
  release(): void {
    this.#kick();
  }

  // `choice`: the answer a piece belongs to (n > 1); 0 or absent is the first.
  text(text: string, choice = 0): void {
    if (text) {
      const d = this.#delta(choice);
      d.text = (d.text ?? '') + text;
    }
    this.#sendContent();
  }

  // Anthropic's thinking comes in blocks, each signed apart, and goes back block by block: a frame
  // holds the thinking of one block at most (its text, then the signature that closes it), and
  // comes before any answer text, so merging never joins two blocks or reorders them.
  reasoning(text: string, choice = 0): void {
    if (text) {
      const d = this.#delta(choice, (f) => !f.signature && !f.redacted_thinking && !hasAnswer(f));
      d.reasoning = (d.reasoning ?? '') + text;
    }
    this.#sendContent();
  }

  signature(signature: string, choice = 0): void {
    if (signature) {
      const d = this.#delta(choice, (f) => !f.signature && !f.redacted_thinking && !hasAnswer(f));
      d.signature = signature;
    }
    this.#sendContent();
  }

  redactedThinking(data: string, choice = 0): void {
    if (data) {
      const d = this.#delta(
        choice,
        (f) => !f.reasoning && !f.signature && !f.redacted_thinking && !hasAnswer(f),
      );
      d.redacted_thinking = data;
    }
    this.#kick();
  }

  /** The prompt's counts as the provider told them before any content: they go with the first delta. */
  prompt(usage: NonNullable<DeltaBody['prompt']>): void {
    if (!this.#deltaMade) this.#prompt = usage;
  }

  refusal(text: string, choice = 0): void {
    if (text) {
      const d = this.#delta(choice);
      d.refusal = (d.refusal ?? '') + text;
    }
    this.#sendContent();
  }

  logprobs(lp: { content?: TokenLogprob[]; refusal?: TokenLogprob[] }, choice = 0): void {
    const d = this.#delta(choice);
    const into = d.logprobs ?? {};
    if (lp.content?.length) into.content = [...(into.content ?? []), ...lp.content];
    if (lp.refusal?.length) into.refusal = [...(into.refusal ?? []), ...lp.refusal];
    d.logprobs = into;
    // The text these belong to is in this frame now: send it (and hold content from here on, in
    // case the writer was not told the request asked for logprobs).
    this.#hold = true;
    this.#kick();
  }

  toolCall(d: ToolCallDelta, choice = 0): void {
    const delta = this.#delta(choice);
    delta.tool_calls ??= [];
    const calls = delta.tool_calls;
    const prev = calls.at(-1);
    // Merge argument fragments of the same call; a new index or a new id starts a new entry.
    if (prev && prev.index === d.index && !d.id && !d.function?.name) {
      const args = (prev.function?.arguments ?? '') + (d.function?.arguments ?? '');
      prev.function = { ...prev.function, arguments: args };
    } else {
      calls.push(structuredClone(d));
    }
    this.#sendContent();
  }

  /** Waits until everything pushed so far is in Redis; rethrows a write failure. */
  async flush(): Promise<void> {
    while (this.#inflight || this.#queue.length > 0) {
      if (!this.#inflight) this.#kick();
      await this.#inflight;
    }
    if (this.#error) throw this.#error;
  }

  /** Content goes out at once, or, holding for logprobs, at the end of this turn. */
  #sendContent(): void {
    if (!this.#hold) {
      this.#kick();
      return;
    }
    if (this.#soon) return;
    this.#soon = true;
    queueMicrotask(() => {
      this.#soon = false;
      this.#kick();
    });
  }

  /** The delta frame queued last for `choice` if it can take more (`fits`), else a new one. */
  #delta(choice: number, fits: (d: DeltaBody) => boolean = () => true): DeltaBody {
    const last = this.#queue.at(-1);
    if (last && last.type === 'delta' && (last.choice ?? 0) === choice && fits(last)) return last;
    const d: DeltaBody = choice > 0 ? { type: 'delta', choice } : { type: 'delta' };
    if (!this.#deltaMade && this.#prompt) d.prompt = this.#prompt;
    this.#deltaMade = true;
    this.#queue.push(d);
    return d;
  }

  #kick(): void {
    if (this.#inflight || this.#queue.length === 0 || this.#error) {
      if (this.#error) this.#queue = [];
      return;
    }
    const batch = this.#queue;
    this.#queue = [];
    const content = batch.some((f) => f.type === 'delta');
    if (content) this.wroteContent = true;
    this.writes++;
    const handedBefore = this.#cursor?.last;
    const written = this.#store.append(this.#jobId, batch, {
      owner: this.#owner,
      ttlMs: this.#ttlMs,
      replyTo: this.#replyTo,
      claim: this.#claim,
      cursor: this.#cursor,
    });
    // Handed to the caller already (the cursor moved before the write's answer): the caller has it.
    const handed = this.#cursor !== undefined && this.#cursor.last !== handedBefore;
    if (content && handed) this.storedContent = true;
    this.#inflight = this.#settle(
      written.then(
        () => {
          if (content) this.storedContent = true;
        },
        (e: unknown) => {
          if (handed) this.storedContent = true;
          throw e;
        },
      ),
    );
  }

  #settle(p: Promise<unknown>): Promise<void> {
    return p
      .then(
        () => {},
        (e: unknown) => {
          this.#error = e;
        },
      )
      .finally(() => {
        this.#inflight = undefined;
        this.#kick();
      });
  }
}

/** A delta already carrying answer content: thinking that follows it goes in a later frame. */
const hasAnswer = (d: DeltaBody): boolean => !!(d.text || d.refusal || d.tool_calls?.length || d.logprobs);
