import { type ChatCompletion, servedModelName } from '@faregate/contracts/chat';
import { type ErrorCode, GatewayError } from '@faregate/contracts/errors';
import type { Frame } from '@faregate/contracts/frames';
import type { RouteStep } from '@faregate/contracts/route';
import { z } from 'zod';

/**
 * Turns a job's frames into one door's stream (OpenAI chat chunks, Anthropic events, Responses
 * events). The relay (routes/v1/chat.ts) owns the job, the connection and its failures; a writer
 * only formats.
 */
export interface FrameWriter {
  /** SSE text for one frame ('' when it has nothing for this door's client). */
  frame(f: Frame): string;
  /** An in-band error ending a stream that has started (timeout, provider failure mid-answer). */
  error(code: ErrorCode, message: string): string;
  /** Whether content reached the caller (a reset then cannot be hidden). */
  readonly started: boolean;
  /** The calls so far, the one the stream comes from last (for the response headers). */
  readonly route: RouteStep[];
}

/**
 * How a door answers from the one pipeline: the non-streamed body made from the chat result, and
 * the writer turning a job's frames into its stream.
 */
export interface Door {
  /** `atMs`: when the answer was complete (the done frame's `at`), for doors that tell it. */
  answer(result: ChatCompletion, atMs?: number): unknown;
  /** The answer is the chat result as it is: relayed as the worker wrote it, never parsed. */
  readonly relaysResult?: boolean;
  writer(id: string, createdMs: number): FrameWriter;
}

const ToolInput = z.record(z.string(), z.unknown());

/**
 * A tool call's JSON arguments as the object Anthropic's `tool_use.input` is. Providers answer
 * with an object; anything else (not JSON, not an object) is kept whole under `_raw`, never lost.
 */
export function parseToolInput(args: string): Record<string, unknown> {
  if (args.trim() === '') return {};
  try {
    const r = ToolInput.safeParse(JSON.parse(args));
    if (r.success) return r.data;
  } catch {
    // Not JSON: kept below.
  }
  return { _raw: args };
}

/** A pipeline refusal said again in a door's own words: the caller's path, and what its API calls it. */
export interface DoorTerm {
  param: string;
  message: string;
}

/**
 * How a door's caller names what the pipeline may refuse: a chat parameter → the caller's name
 * (`user` → `metadata.user_id`), and where each content part or message came from
 * (`messages.3.content.1` → `input.2.content.1`), or a whole refusal in the door's words.
 */
export type DoorNames = Record<string, string | DoorTerm>;

/**
 * An error from the pipeline that names a chat parameter, named as the door's caller sent it
 * (`user` → `metadata.user_id`): a caller fixes the field it wrote, not ours. An error naming no
 * parameter (the 402) has the quoted chat names in its message renamed.
 */
export function inDoorTerms(e: unknown, names: Readonly<DoorNames>): unknown {
  if (!(e instanceof GatewayError)) return e;
  if (e.param === null) {
    let message = e.message;
    for (const [chat, door] of Object.entries(names))
      if (typeof door === 'string') message = message.replaceAll(`'${chat}'`, `'${door}'`);
    return message === e.message ? e : new GatewayError({ ...e.toJSON(), message });
  }
  if (!Object.hasOwn(names, e.param)) return e;
  const term = names[e.param] ?? e.param;
  if (typeof term !== 'string') return new GatewayError({ ...e.toJSON(), ...term });
  return new GatewayError({
    ...e.toJSON(),
    param: term,
    message: e.message.replaceAll(`'${e.param}'`, `'${term}'`),
  });
}

/** A door's refusal of a parameter: a 400 naming it. */
export const invalidParam = (param: string, message: string): GatewayError =>
  new GatewayError({ code: 'invalid_request_error', message, param });

/**
 * What a `running` status frame says about the stream that follows: the model generating it
 * (`provider/model`) and every call so far, this one last (for the response headers).
 */
export function runningCall(f: Frame): { model: string; route: RouteStep[] } | undefined {
  if (f.type !== 'status' || f.state !== 'running' || !f.provider || !f.model) return undefined;
  return {
    model: servedModelName(f.provider, f.model),
    route: [...(f.route ?? []), { provider: f.provider, model: f.model, status: 200, code: 'ok' }],
  };
}
