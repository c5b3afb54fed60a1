import type { ChatCompletion } from '@faregate/contracts/chat';
import type { Frame } from '@faregate/contracts/frames';
import { errorFromFrame } from './errors.ts';
import type { ChoiceOutput, JobResult } from './types.ts';

/**
 * Builds a job's output from its frames: text and reasoning from deltas, per choice (a request with
 * `n > 1` streams every choice's deltas interleaved, each tagged with its `choice`; choice 0's carry
 * none), dropped on `reset` (the gateway restarted generation on a retry or fallback, so what came
 * before is not part of the answer). Throws the job's error for an `error` frame.
 */
export class Assembler {
  readonly job: string;
  /** Choice 0's text (the answer of a request without `n`). */
  text = '';
  /** Choice 0's reasoning. */
  reasoning = '';
  completion: ChatCompletion | undefined;
  lastSeq = 0;
  /** Every choice's output so far, by index (choice 0 mirrored in `text` and `reasoning`). */
  #choices: ChoiceOutput[] = [{ index: 0, text: '', reasoning: '' }];

  constructor(job: string) {
    this.job = job;
  }

  add(f: Frame): void {
    this.lastSeq = f.seq;
    switch (f.type) {
      case 'delta': {
        const c = this.#choice(f.choice ?? 0);
        if (f.text) c.text += f.text;
        if (f.reasoning) c.reasoning += f.reasoning;
        if (c.index === 0) {
          this.text = c.text;
          this.reasoning = c.reasoning;
        }
        return;
      }
      case 'reset':
        this.text = '';
        this.reasoning = '';
        this.#choices = [{ index: 0, text: '', reasoning: '' }];
        return;
      case 'done':
        this.completion = f.result;
        return;
      case 'error':
        throw errorFromFrame(f.error, f.status, this.job);
      default:
        return;
    }
  }

  /** Each choice's text and reasoning so far, by index. */
  get choices(): ChoiceOutput[] {
    return this.#choices.map((c) => ({ ...c }));
  }

  get done(): boolean {
    return this.completion !== undefined;
  }

  result(): JobResult {
    if (!this.completion) throw new Error(`Job ${this.job} has not finished.`);
    // Every choice the completion has, also one that streamed no delta.
    for (const c of this.completion.choices ?? []) this.#choice(c.index ?? 0);
    return {
      id: this.job,
      text: this.text,
      reasoning: this.reasoning,
      choices: this.choices,
      completion: this.completion,
      lastSeq: this.lastSeq,
    };
  }

  #choice(index: number): ChoiceOutput {
    for (let i = this.#choices.length; i <= index; i++)
      this.#choices.push({ index: i, text: '', reasoning: '' });
    return this.#choices[index] as ChoiceOutput;
  }
}
