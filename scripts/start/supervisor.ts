import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import type { Writable } from 'node:stream';
import { styleText } from 'node:util';
import { renderLine } from './log-lines.ts';

type Color = 'cyan' | 'magenta' | 'blue' | 'green' | 'yellow' | 'gray' | 'red';
const PALETTE: Color[] = ['cyan', 'magenta', 'blue', 'green', 'yellow'];

export interface ServiceSpec {
  /** Shown before every line: `[worker-openai#2]`. */
  name: string;
  /** Entry point, relative to the repository root. */
  script: string;
  env: Record<string, string | undefined>;
  /** Stop order: phase 1 (ingress, workers: finish in-flight requests) before phase 2 (what they need). */
  phase: 1 | 2;
}

export interface Running {
  spec: ServiceSpec;
  proc: ChildProcess;
  /** Resolves once the process has exited and its output is flushed. */
  closed: Promise<void>;
  readonly alive: boolean;
}

export interface SupervisorOptions {
  root: string;
  /** Print JSON log lines unchanged. */
  json: boolean;
  color: boolean;
  /** Width the `[name]` prefixes are padded to, so the lines align. */
  prefixWidth: number;
  /** Grace period after SIGTERM before SIGKILL (the services drain for up to 25 s). */
  killAfterMs: number;
  /** A service exited while nobody asked it to. */
  onUnexpectedExit: (name: string, code: number | null, signal: NodeJS.Signals | null) => void;
}

/** Runs the services as child processes, prefixes their output, and stops them in order. */
export class Supervisor {
  readonly running: Running[] = [];
  #stopping = false;
  #opts: SupervisorOptions;

  constructor(opts: SupervisorOptions) {
    this.#opts = opts;
  }

  get stopping(): boolean {
    return this.#stopping;
  }

  #paint(color: Color | undefined, text: string): string {
    return this.#opts.color && color ? styleText(color, text, { validateStream: false }) : text;
  }

  /** Writes `[name] line` for the runner itself or a service. */
  print(name: string, line: string, color?: Color, out: Writable = process.stdout): void {
    out.write(`${this.#paint(color, `[${name}]`.padEnd(this.#opts.prefixWidth))} ${line}\n`);
  }

  start(spec: ServiceSpec): Running {
    const color = PALETTE[this.running.length % PALETTE.length];
    // Own process group: a Ctrl-C in the terminal reaches only this runner, which stops the
    // services in order instead of all at once.
    const proc = spawn(process.execPath, [spec.script], {
      cwd: this.#opts.root,
      env: spec.env,
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    const pipe = (stream: NodeJS.ReadableStream | null, out: Writable) => {
      if (!stream) return;
      createInterface({ input: stream, crlfDelay: Number.POSITIVE_INFINITY }).on('line', (line) => {
        if (this.#opts.json) return this.print(spec.name, line, color, out);
        const r = renderLine(line);
        const levelColor: Color | undefined =
          r.level === undefined ? undefined : r.level >= 50 ? 'red' : r.level >= 40 ? 'yellow' : undefined;
        for (const l of r.lines)
          this.print(spec.name, levelColor ? this.#paint(levelColor, l) : l, color, out);
      });
    };
    pipe(proc.stdout, process.stdout);
    pipe(proc.stderr, process.stderr);
    proc.on('error', (e) => this.print(spec.name, `could not start: ${e.message}`, 'red', process.stderr));
    const closed = once(proc, 'close').then(([code, signal]) => {
      const c = code as number | null;
      const s = signal as NodeJS.Signals | null;
      if (!this.#stopping) {
        this.print(spec.name, `exited unexpectedly (${s ?? `code ${c}`})`, 'red', process.stderr);
        this.#opts.onUnexpectedExit(spec.name, c, s);
      } else if (c !== 0) {
        this.print(spec.name, `exited with ${s ?? `code ${c}`}`, 'yellow', process.stderr);
      }
    });
    const running: Running = {
      spec,
      proc,
      closed,
      get alive() {
        return proc.exitCode === null && proc.signalCode === null;
      },
    };
    this.running.push(running);
    return running;
  }

  async #stopOne(r: Running): Promise<void> {
    if (!r.alive) return r.closed;
    r.proc.kill('SIGTERM');
    const timer = setTimeout(() => {
      this.print(r.spec.name, `did not stop within ${this.#opts.killAfterMs / 1000} s: killing it`, 'red');
      r.proc.kill('SIGKILL');
    }, this.#opts.killAfterMs);
    await r.closed;
    clearTimeout(timer);
  }

  /** SIGTERM phase by phase, waiting for each phase to exit (SIGKILL after the grace period). */
  async stop(): Promise<void> {
    this.#stopping = true;
    for (const phase of [1, 2] as const) {
      await Promise.all(this.running.filter((r) => r.spec.phase === phase).map((r) => this.#stopOne(r)));
    }
  }

  /** Last resort (second Ctrl-C, or the runner itself failing): SIGKILL whatever still runs. */
  killAll(): void {
    this.#stopping = true;
    for (const r of this.running) if (r.alive) r.proc.kill('SIGKILL');
  }
}
