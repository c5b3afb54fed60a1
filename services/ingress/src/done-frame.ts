import { RouteStep } from '@faregate/contracts/route';
import { z } from 'zod';

/** What a done frame holds before its result: the route, the time it was answered; nothing else. */
const Head = z.strictObject({ route: z.array(RouteStep).optional(), at: z.number().optional() });

/** A done frame's answer as it was written: the chat.completion's JSON text, and the route. */
export interface RawDone {
  /** The `result` field's JSON, byte for byte. */
  result: string;
  route: RouteStep[] | undefined;
}

const PREFIX = '{"v":1,';
const TYPES = { done: '"type":"done",', embeddings: '"type":"embeddings",' } as const;
const RESULT = '"result":';
/** What a worker before `doneBody` wrote after the result: the time the answer was complete. */
const TRAILING_AT = /,"at":\d+$/;

/**
 * The answer of a done frame without parsing (or re-serializing) the chat.completion: its bytes
 * are relayed to a chat completions caller as the worker wrote them (`type: 'embeddings'`: an
 * embeddings frame's list, up to 2,048 vectors, relayed likewise). The frame store writes
 * `{"v":1,"job":…,"seq":N,` + the body, and the worker's body is `doneBody`'s
 * `{"type":"done","route":[…],"at":N,"result":{…}}` (JSON.stringify keeps that order), so the
 * result is the frame's last field. Only the small fields before it are parsed (the route is checked:
 * it names what served the answer in the headers). A frame of a worker that wrote `at` after the
 * result is read too. `undefined` for any other layout (another frame, another field, an older
 * worker's order): the caller parses the frame instead.
 * With `route: false` nothing before the result is parsed or returned (only the answer is wanted).
 * Sound for the same reason as `isTerminalRaw`: a quote inside a string value is escaped, so
 * `"result":` occurs at the top level first (route steps have no `result`).
 */
export function rawDone(
  raw: string,
  opts: { route?: boolean; type?: keyof typeof TYPES } = {},
): RawDone | undefined {
  if (!raw.startsWith(PREFIX) || raw.charCodeAt(raw.length - 1) !== 125 /* } */) return undefined;
  const type = TYPES[opts.type ?? 'done'];
  let i = raw.indexOf(type);
  if (i < 0) return undefined;
  i += type.length;
  const r = raw.indexOf(RESULT, i);
  if (r < 0 || (r > i && raw.charCodeAt(r - 1) !== 44) /* , */) return undefined;
  let route: RouteStep[] | undefined;
  // A reader that needs only the answer (a batch line) skips the fields before it: no parse per line.
  if (r > i && opts.route !== false) {
    let json: unknown;
    try {
      json = JSON.parse(`{${raw.slice(i, r - 1)}}`);
    } catch {
      return undefined;
    }
    const head = Head.safeParse(json);
    if (!head.success) return undefined;
    route = head.data.route;
  }
  return resultAt(raw, r, route);
}

/** The frame's `"result":{…}` starting at `i`, to the frame's end (or to a trailing `at`). */
function resultAt(raw: string, i: number, route: RouteStep[] | undefined): RawDone | undefined {
  if (raw.charCodeAt(i + RESULT.length) !== 123 /* { */) return undefined;
  let result = raw.slice(i + RESULT.length, -1);
  if (result.charCodeAt(result.length - 1) !== 125) result = result.replace(TRAILING_AT, '');
  // The result is an object closing right before the frame does.
  if (result.charCodeAt(result.length - 1) !== 125) return undefined;
  return { result, route };
}
