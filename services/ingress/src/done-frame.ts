import { RouteStep } from '@faregate/contracts/route';
import { z } from 'zod';

const Route = z.array(RouteStep);

/** A done frame's answer as it was written: the chat.completion's JSON text, and the route. */
export interface RawDone {
  /** The `result` field's JSON, byte for byte. */
  result: string;
  route: RouteStep[] | undefined;
}

const PREFIX = '{"v":1,';
const TYPES = { done: '"type":"done",', embeddings: '"type":"embeddings",' } as const;
const ROUTE = '"route":';
const RESULT = '"result":';

/**
 * The answer of a done frame without parsing (or re-serializing) the chat.completion: its bytes
 * are relayed to a chat completions caller as the worker wrote them (`type: 'embeddings'`: an
 * embeddings frame's list, up to 2,048 vectors, relayed likewise). The frame store writes
 * `{"v":1,"job":…,"seq":N,` + the body, and the worker's body is `{"type":"done","route":[…],"result":{…}}`
 * (JSON.stringify keeps that order), so the result is the frame's last field. Only the small route
 * is parsed (and checked: it names what served the answer in the headers). `undefined` for any
 * other layout (another frame, an older worker's order): the caller parses the frame instead.
 * With `route: false` the route is neither parsed nor returned (only the answer is wanted).
 * Sound for the same reason as `isTerminalRaw`: a quote inside a string value is escaped, so
 * `,"result":` occurs at the top level first (route steps have no `result`).
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
  let route: RouteStep[] | undefined;
  if (raw.startsWith(ROUTE, i)) {
    const end = raw.indexOf(`,${RESULT}`, i);
    if (end < 0) return undefined;
    // A reader that needs only the answer (a batch line) skips the route: no parse per line.
    if (opts.route === false) return resultAt(raw, end + 1, undefined);
    let json: unknown;
    try {
      json = JSON.parse(raw.slice(i + ROUTE.length, end));
    } catch {
      return undefined;
    }
    const r = Route.safeParse(json);
    if (!r.success) return undefined;
    route = r.data;
    i = end + 1;
  }
  return resultAt(raw, i, route);
}

/** The frame's `"result":{…}` starting at `i`, to the frame's end. */
function resultAt(raw: string, i: number, route: RouteStep[] | undefined): RawDone | undefined {
  if (!raw.startsWith(RESULT, i) || raw.charCodeAt(i + RESULT.length) !== 123 /* { */) return undefined;
  const result = raw.slice(i + RESULT.length, -1);
  // The result is an object closing right before the frame does.
  if (result.charCodeAt(result.length - 1) !== 125) return undefined;
  return { result, route };
}
