import type { ChatCompletion } from '@faregate/contracts/chat';
import type { Frame } from '@faregate/contracts/frames';
import { errorFromFrame } from './errors.ts';
import type { JobResult } from './types.ts';

/**
 * Builds a job's output from its frames: text and reasoning from deltas, dropped on `reset` (the
 * gateway restarted generation on a retry or fallback, so what came before is not part of the
 * answer). Throws the job's error for an `error` frame.
 */
export class Assembler {
  readonly job: string;
  text = '';
  reasoning = '';
  completion: ChatCompletion | undefined;
  lastSeq = 0;

  constructor(job: string) {
    this.job = job;
  }

  add(f: Frame): void {
    this.lastSeq = f.seq;
    switch (f.type) {
      case 'delta':
        if (f.text) this.text += f.text;
        if (f.reasoning) this.reasoning += f.reasoning;
        return;
      case 'reset':
        this.text = '';
        this.reasoning = '';
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

  get done(): boolean {
    return this.completion !== undefined;
  }

  result(): JobResult {
    if (!this.completion) throw new Error(`Job ${this.job} has not finished.`);
    return {
      id: this.job,
      text: this.text,
      reasoning: this.reasoning,
      completion: this.completion,
      lastSeq: this.lastSeq,
    };
  }
}
