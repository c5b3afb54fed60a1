import { Frame, isTerminal } from '@faregate/contracts/frames';
import { BatchProgressEvent, type ClientOp, FINAL_BATCH_STATUSES, ServerReply } from '@faregate/contracts/ws';
import { backoffMs } from './backoff.ts';
import { errorFromBody, FaregateConnectionError, FaregateError } from './errors.ts';
import { Heartbeat, unref } from './heartbeat.ts';
import { Subscriber } from './subscription.ts';
import type { BatchProgress, WebSocketConstructor, WebSocketLike } from './types.ts';

export interface ConnectionConfig {
  url: string;
  headers: Record<string, string>;
  WebSocket: () => Promise<WebSocketConstructor>;
  maxReconnects: number;
  /**
   * Asks the HTTP API about a job (or batch) after the upgrade failed, so a bad key or an unknown id
   * fails at once with the server's error (the WebSocket API hides the upgrade's status) instead of
   * retrying.
   */
  probe(id: string, kind: Kind): Promise<void>;
  /** Ping when the socket has been silent this long; give up on it after twice as long. */
  heartbeatMs?: number;
  /** Close the socket once no subscription has needed it for this long. */
  lingerMs?: number;
}

/** What a subscription follows: a job's frames, or an OpenAI batch's progress events. */
type Kind = 'job' | 'batch';
type Item = Frame | BatchProgress;

const isLast: Record<Kind, (item: Item) => boolean> = {
  job: (f) => isTerminal(f as Frame),
  batch: (e) => e.type === 'batch_status' && (FINAL_BATCH_STATUSES as readonly string[]).includes(e.status),
};

/** Server subscriptions are per job (or batch) and connection; several local readers of one share one. */
interface Channel {
  /** The job or batch id (they never collide: `req_…` / `batch_…`). */
  job: string;
  kind: Kind;
  subs: Set<Subscriber<Item>>;
  /** Subscribe ops sent and not yet acknowledged: frames out of order are expected until then. */
  pendingAcks: number;
  /** The server is following this job for us. */
  following: boolean;
  /** Subscribes the server refused in a row as worth retrying (its store down or full). */
  refusals: number;
  /** The subscribe to send again after such a refusal, when one is waiting. */
  retry?: ReturnType<typeof setTimeout> | undefined;
}

const OPEN = 1;

/**
 * One shared WebSocket for all of a client's subscriptions. It opens on demand, reconnects with
 * backoff when the socket drops (network, server restart, 4008 slow consumer), re-subscribes every
 * job from the cursor its readers hold, and closes when nothing needs it. Per-job `seq` numbers make
 * resumption exact: readers take only the next seq, so each frame reaches the application once.
 */
export class StreamConnection {
  readonly #c: ConnectionConfig;
  readonly #channels = new Map<string, Channel>();
  #socket: WebSocketLike | undefined;
  #opened = false;
  /** Between deciding to connect and having a socket (the constructor loads asynchronously). */
  #connecting = false;
  #failures = 0;
  #retryTimer: ReturnType<typeof setTimeout> | undefined;
  #lingerTimer: ReturnType<typeof setTimeout> | undefined;
  readonly #heartbeat: Heartbeat;
  #closed = false;
  /** Counts sockets, so events of a socket already replaced are ignored. */
  #generation = 0;

  constructor(config: ConnectionConfig) {
    this.#c = config;
    this.#heartbeat = new Heartbeat(config.heartbeatMs ?? 20_000);
  }

  subscribe(job: string, after: number, signal?: AbortSignal): Subscriber<Frame> {
    return this.#open('job', job, after, signal) as Subscriber<Item> as Subscriber<Frame>;
  }

  /** An OpenAI batch's progress events after `after`, ending with its final status. */
  subscribeBatch(batch: string, after: number, signal?: AbortSignal): Subscriber<BatchProgress> {
    return this.#open('batch', batch, after, signal) as Subscriber<Item> as Subscriber<BatchProgress>;
  }

  #open(kind: Kind, job: string, after: number, signal?: AbortSignal): Subscriber<Item> {
    if (this.#closed) throw new FaregateConnectionError('The client was closed.');
    signal?.throwIfAborted();
    const sub = new Subscriber<Item>(
      job,
      after,
      { onFlowChange: (s) => this.#flow(s), onRelease: (s) => this.#release(s), isLast: isLast[kind] },
      signal,
    );
    let ch = this.#channels.get(job);
    if (!ch || ch.kind !== kind) {
      ch = { job, kind, subs: new Set(), pendingAcks: 0, following: false, refusals: 0 };
      this.#channels.set(job, ch);
    }
    ch.subs.add(sub);
    this.#clearLinger();
    if (this.#isOpen()) this.#resubscribe(ch);
    else this.#connect();
    return sub;
  }

  /** Closes the socket; open subscriptions fail with a FaregateConnectionError. */
  close(): void {
    this.#closed = true;
    const err = new FaregateConnectionError('The client was closed.');
    for (const ch of [...this.#channels.values()]) {
      clearTimeout(ch.retry);
      for (const s of [...ch.subs]) s.fail(err);
    }
    this.#channels.clear();
    this.#drop();
  }

  /** For tests and diagnostics: the current socket, if any. */
  get socket(): WebSocketLike | undefined {
    return this.#socket;
  }

  #isOpen(): boolean {
    return this.#socket !== undefined && this.#opened && this.#socket.readyState === OPEN;
  }

  #connect(): void {
    if (this.#socket || this.#connecting || this.#retryTimer || this.#closed) return;
    const gen = ++this.#generation;
    this.#opened = false;
    this.#connecting = true;
    this.#c
      .WebSocket()
      .then((WS) => {
        if (gen !== this.#generation || this.#closed) return;
        this.#connecting = false;
        const ws = new WS(this.#c.url, { headers: this.#c.headers });
        this.#socket = ws;
        ws.addEventListener('open', () => gen === this.#generation && this.#onOpen());
        ws.addEventListener('message', (ev) => gen === this.#generation && this.#onMessage(ev.data));
        ws.addEventListener('close', (ev) => gen === this.#generation && this.#onClose(ev.code, ev.reason));
        // 'close' always follows 'error'; the reconnect decision is taken there.
        ws.addEventListener('error', () => {});
      })
      .catch((e) => {
        if (gen !== this.#generation) return;
        this.#connecting = false;
        this.#failAll(new FaregateConnectionError('Could not create a WebSocket.', e));
      });
  }

  #onOpen(): void {
    this.#opened = true;
    this.#heartbeat.start(
      () => this.#send({ op: 'ping' }),
      () => {
        // No pong and no frame: the path is dead even if TCP has not noticed. Start afresh.
        this.#drop();
        this.#onClose(1006, 'heartbeat timeout');
      },
    );
    for (const ch of this.#channels.values()) {
      ch.pendingAcks = 0;
      ch.following = false;
      this.#resubscribe(ch);
    }
    this.#maybeLinger();
  }

  #onMessage(data: unknown): void {
    this.#heartbeat.heard();
    let m: unknown;
    try {
      m = JSON.parse(typeof data === 'string' ? data : String(data));
    } catch {
      return;
    }
    // A job's frame (or a batch's progress event) carries its `seq`; everything else is a reply to
    // one of our ops.
    if (typeof m === 'object' && m !== null && 'seq' in m) {
      const progress = !('job' in m) && 'batch' in m;
      const f = progress ? BatchProgressEvent.safeParse(m) : Frame.safeParse(m);
      const id = 'job' in m ? m.job : 'batch' in m ? m.batch : undefined;
      const ch = typeof id === 'string' ? this.#channels.get(id) : undefined;
      if (!ch || ch.kind !== (progress ? 'batch' : 'job')) return;
      if (!f.success) {
        // Skipping it would leave a gap the server fills with the same frame, forever: fail instead.
        const type = 'type' in m ? String(m.type) : 'unknown';
        this.#failChannel(
          ch,
          new FaregateError({
            message: `The gateway sent a frame this SDK cannot read (type ${type}); upgrade @faregate/sdk.`,
            type: 'server_error',
            code: null,
            param: null,
            requestId: ch.job,
          }),
        );
        return;
      }
      // Progress: the connection works, so the next drop starts its backoff afresh.
      this.#failures = 0;
      this.#route(ch, f.data);
      return;
    }
    const r = ServerReply.safeParse(m);
    if (!r.success) return;
    const reply = r.data;
    const id =
      'job' in reply && reply.job !== undefined ? reply.job : 'batch' in reply ? reply.batch : undefined;
    const ch = id === undefined ? undefined : this.#channels.get(id);
    if (reply.type === 'ack' && reply.op === 'subscribe' && ch) {
      ch.pendingAcks = Math.max(0, ch.pendingAcks - 1);
      ch.refusals = 0;
      // The bounded progress stream no longer has the events after some cursors: those readers
      // get one `batch_gap` standing for them, and go on from the oldest event kept.
      if (ch.kind === 'batch' && reply.truncated === true && reply.first_seq !== undefined) {
        const seq = reply.first_seq - 1;
        for (const s of [...ch.subs]) {
          if (s.cursor >= seq) continue;
          s.skipTo({
            v: 1,
            type: 'batch_gap',
            batch: ch.job,
            seq,
            missed: seq - s.cursor,
            status: reply.status ?? 'in_progress',
            request_counts: reply.request_counts ?? { total: 0, completed: 0, failed: 0 },
          });
        }
      }
      // The job is finished and this cursor is at its end: nothing more will come.
      if (reply.ended === true && reply.last_seq !== undefined) {
        const last = reply.last_seq;
        for (const s of [...ch.subs]) if (s.cursor >= last) s.endAtLastFrame();
        if (this.#channels.get(ch.job) === ch) ch.following = false;
      }
    } else if (reply.type === 'nack' && reply.op === 'subscribe' && ch) {
      ch.pendingAcks = Math.max(0, ch.pendingAcks - 1);
      // The server cannot follow the job now (its queue store down or full): subscribe again when
      // it says, a bounded number of times in a row, as a dropped socket is reconnected.
      if (reply.error.retryable === true && ch.refusals < this.#c.maxReconnects) {
        ch.refusals++;
        ch.following = false;
        if (ch.retry !== undefined) return;
        // Spread out: every client refused in one outage would otherwise come back at once.
        const wait = (reply.error.retryAfterMs ?? backoffMs(ch.refusals - 1)) * (1 + Math.random() / 4);
        ch.retry = setTimeout(() => {
          ch.retry = undefined;
          if (!this.#closed && this.#channels.get(ch.job) === ch) this.#resubscribe(ch);
        }, wait);
        return;
      }
      const err = errorFromBody({ error: reply.error }, undefined, ch.job);
      // Final: the job is not ours / unknown, or this socket has too many subscriptions.
      this.#failChannel(ch, err);
    }
  }

  #route(ch: Channel, f: Item): void {
    let gap = false;
    for (const s of [...ch.subs]) {
      if (s.offer(f) === 'gap') gap = true;
    }
    // Out-of-order frames are expected until a (re)subscribe is acknowledged; after that a gap
    // means frames were lost on the way, and the stream on the server still has them.
    if (gap && ch.pendingAcks === 0) this.#resubscribe(ch);
    if (isLast[ch.kind](f) && this.#channels.get(ch.job) === ch) ch.following = false;
  }

  /** Asks the server for the job's frames after the lowest cursor of its live readers. */
  #resubscribe(ch: Channel): void {
    if (!this.#isOpen()) return;
    let after = Number.POSITIVE_INFINITY;
    for (const s of ch.subs) if (s.active && !s.detached) after = Math.min(after, s.cursor);
    if (after === Number.POSITIVE_INFINITY) {
      // Every reader is full: stop the server sending until one catches up.
      if (ch.following) this.#send({ op: 'unsubscribe', ...target(ch) });
      ch.following = false;
      return;
    }
    ch.pendingAcks++;
    ch.following = true;
    this.#send({ op: 'subscribe', ...target(ch), after });
  }

  #flow(sub: Subscriber<Item>): void {
    const ch = this.#channels.get(sub.job);
    if (ch?.subs.has(sub)) this.#resubscribe(ch);
  }

  #release(sub: Subscriber<Item>): void {
    const ch = this.#channels.get(sub.job);
    if (!ch?.subs.delete(sub)) return;
    if (ch.subs.size > 0) return;
    clearTimeout(ch.retry);
    this.#channels.delete(ch.job);
    if (ch.following && this.#isOpen()) this.#send({ op: 'unsubscribe', ...target(ch) });
    this.#maybeLinger();
  }

  #onClose(code: number, reason: string): void {
    this.#socket = undefined;
    this.#heartbeat.stop();
    const wasOpen = this.#opened;
    this.#opened = false;
    for (const ch of this.#channels.values()) {
      ch.pendingAcks = 0;
      ch.following = false;
    }
    if (this.#closed || this.#channels.size === 0) return;
    this.#failures++;
    if (this.#failures > this.#c.maxReconnects) {
      this.#failAll(
        new FaregateConnectionError(
          `The stream connection failed ${this.#failures} times in a row (last close ${code}${reason ? `: ${reason}` : ''}).`,
        ),
      );
      return;
    }
    // The upgrade itself failed: a bad key or unknown job answers the same over HTTP, and fails now.
    const check = wasOpen ? Promise.resolve() : this.#probe();
    // 4008 (slow consumer) asks for a prompt resume; other drops back off.
    const wait = code === 4008 && this.#failures === 1 ? 0 : backoffMs(this.#failures - 1);
    void check.then(() => {
      if (this.#closed || this.#channels.size === 0 || this.#socket || this.#retryTimer) return;
      this.#retryTimer = setTimeout(() => {
        this.#retryTimer = undefined;
        if (this.#channels.size > 0) this.#connect();
      }, wait);
    });
  }

  async #probe(): Promise<void> {
    const ch = this.#channels.values().next().value;
    if (!ch) return;
    try {
      await this.#c.probe(ch.job, ch.kind);
    } catch (e) {
      if (
        e instanceof FaregateError &&
        e.status !== undefined &&
        e.status >= 400 &&
        e.status < 500 &&
        e.status !== 408 &&
        e.status !== 429
      ) {
        if (e.status === 404) this.#failChannel(ch, e);
        else this.#failAll(e);
      }
    }
  }

  #failChannel(ch: Channel, err: unknown): void {
    clearTimeout(ch.retry);
    for (const s of [...ch.subs]) s.fail(err);
    this.#channels.delete(ch.job);
    this.#maybeLinger();
  }

  #failAll(err: unknown): void {
    for (const ch of [...this.#channels.values()]) this.#failChannel(ch, err);
  }

  #send(op: ClientOp): void {
    this.#socket?.send(JSON.stringify(op));
  }

  #maybeLinger(): void {
    if (this.#channels.size > 0 || this.#lingerTimer) return;
    this.#lingerTimer = setTimeout(() => {
      this.#lingerTimer = undefined;
      if (this.#channels.size === 0) this.#drop();
    }, this.#c.lingerMs ?? 1_000);
    unref(this.#lingerTimer);
  }

  #clearLinger(): void {
    if (this.#lingerTimer) clearTimeout(this.#lingerTimer);
    this.#lingerTimer = undefined;
  }

  /** Forgets the current socket (its late events are ignored) and closes it. */
  #drop(): void {
    this.#generation++;
    this.#heartbeat.stop();
    this.#clearLinger();
    if (this.#retryTimer) clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
    const ws = this.#socket;
    this.#socket = undefined;
    this.#opened = false;
    this.#connecting = false;
    try {
      ws?.close(1000, 'done');
    } catch {
      // Closing a socket that never connected can throw; it is gone either way.
    }
  }
}

/** The op field naming what a channel follows. */
function target(ch: Channel): { job: string } | { batch: string } {
  return ch.kind === 'job' ? { job: ch.job } : { batch: ch.job };
}
