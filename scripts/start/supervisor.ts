import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import type { Writable } from 'node:stream';
import { styleText } from 'node:util';
import { RESTART_POLICY, RestartBackoff, type RestartPolicy } from './backoff.ts';
import { renderLine } from './log-lines.ts';
import { SERVICE_NODE_FLAGS } from './node-flags.ts';

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
  /** The current process: a new one after each restart. */
  readonly proc: ChildProcess;
  /** Resolves once the current process has exited and its output is flushed. */
  readonly closed: Promise<void>;
  readonly alive: boolean;
  /** How often it exited while nobody asked it to (each exit is followed by a restart). */
  readonly crashes: number;
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
  /** Backoff between restarts of a crashed service (default RESTART_POLICY). */
  restart?: RestartPolicy;
}

class Service implements Running {
  readonly spec: ServiceSpec;
  readonly color: Color | undefined;
  readonly backoff: RestartBackoff;
  // Set by Supervisor.#spawn right after construction, and again on each restart.
  proc!: ChildProcess;
  closed!: Promise<void>;
  crashes = 0;
  /** A restart waiting for its backoff delay. */
  timer: NodeJS.Timeout | undefined;

  constructor(spec: ServiceSpec, color: Color | undefined, policy: RestartPolicy) {
    this.spec = spec;
    this.color = color;
    this.backoff = new RestartBackoff(policy);
  }

  get alive(): boolean {
    return this.proc.exitCode === null && this.proc.signalCode === null;
  }
}

/**
 * Runs the services as child processes, prefixes their output, restarts any that exits while
 * nobody asked it to (with backoff, never giving up, like compose's `restart: unless-stopped`),
 * and stops them in order.
 */
export class Supervisor {
  readonly #services: Service[] = [];
  #stopping = false;
  #opts: SupervisorOptions;

  constructor(opts: SupervisorOptions) {
    this.#opts = opts;
  }

  get running(): readonly Running[] {
    return this.#services;
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
    const color = PALETTE[this.#services.length % PALETTE.length];
    const s = new Service(spec, color, this.#opts.restart ?? RESTART_POLICY);
    this.#services.push(s);
    this.#spawn(s);
    return s;
  }

  /** Starts (or restarts) the service's process, with the same name and environment. */
  #spawn(s: Service): void {
    const { spec, color } = s;
    const startedAt = Date.now();
    // Own process group: a Ctrl-C in the terminal reaches only this runner, which stops the
    // services in order instead of all at once.
    const proc = spawn(process.execPath, [...SERVICE_NODE_FLAGS, spec.script], {
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
    s.proc = proc;
    s.closed = once(proc, 'close').then(([code, signal]) => {
      const how = (signal as NodeJS.Signals | null) ?? `code ${code as number | null}`;
      if (this.#stopping) {
        if (code !== 0) this.print(spec.name, `exited with ${how}`, 'yellow', process.stderr);
        return;
      }
      s.crashes++;
      const { delayMs, restart } = s.backoff.next(Date.now() - startedAt);
      this.print(
        spec.name,
        `exited (${how}); restarting in ${delayMs} ms (restart ${restart})`,
        'red',
        process.stderr,
      );
      s.timer = setTimeout(() => {
        s.timer = undefined;
        if (!this.#stopping) this.#spawn(s);
      }, delayMs);
    });
  }

  /** No restart from now on: stopping means stopping. */
  #cancelRestarts(): void {
    this.#stopping = true;
    for (const s of this.#services) {
      clearTimeout(s.timer);
      s.timer = undefined;
    }
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
    this.#cancelRestarts();
    for (const phase of [1, 2] as const) {
      await Promise.all(this.#services.filter((r) => r.spec.phase === phase).map((r) => this.#stopOne(r)));
    }
  }

  /** Last resort (second Ctrl-C, or the runner itself failing): SIGKILL whatever still runs. */
  killAll(): void {
    this.#cancelRestarts();
    for (const r of this.#services) if (r.alive) r.proc.kill('SIGKILL');
  }
}
