import type { BatchEndpoint } from '@faregate/contracts/openai-batches';
import type { Frame } from '@faregate/contracts/frames';
import type { IngressDeps } from '../deps.ts';
import { rawDone } from '../done-frame.ts';
import { RESPONSES_PARAMS } from '../doors/responses.ts';
import { toResponse } from '../doors/responses-output.ts';
import { inDoorTerms } from '../doors/shared.ts';
import { fromZod } from '../plugins/errors.ts';
import type { Principal } from '../plugins/auth.ts';
import { EmbeddingsBody } from '../routes/v1/embeddings.ts';
import { ResponsesBody, responsesChat } from '../routes/v1/responses.ts';
import {
  parseChatRequest,
  QuotaRefusal,
  type SubmitOptions,
  submitChat,
  submitEmbeddings,
} from '../submit.ts';

/**
 * What a batch line is for each endpoint a batch may target: its body validated as the live door
 * validates it, submitted as an async job through the one pipeline (the same admission, routing,
 * budget hold and billing), and its job's successful terminal frame turned into the body the door
 * would have answered. A batch line is the door's request; only the way it is submitted differs.
 */
export interface LineEndpoint {
  /** Whether `answer` needs the line's request body (a Responses object echoes its request). */
  readonly answerNeedsBody: boolean;
  /**
   * Validates the body as the door does (a 400 naming the parameter) and queues its job: `batch` (an
   * OpenAI batch line: no delta frames) or `async` (a job batch's member, followed as a job).
   */
  submit(
    deps: IngressDeps,
    principal: Principal,
    body: unknown,
    mode: LineMode,
    opts: SubmitOptions,
  ): Promise<void>;
  /** The providers whose queues the line's job may be on (its route's candidates). */
  providers(deps: IngressDeps, body: unknown): string[];
  /** The provider of each hop of the line's route, in order (hop `h`'s job is on `hops[h]`'s queue). */
  hops(deps: IngressDeps, body: unknown): string[];
  /** The door's answer from the job's terminal frame; undefined when the frame is not a success. */
  answer(frame: Frame | undefined, body: unknown): unknown;
  /**
   * The answer's JSON text straight from the terminal frame's text, when the door answers with the
   * frame's result as it is (no parse); undefined: use `answer` on the parsed frame.
   */
  rawAnswer?(raw: string): string | undefined;
  /** An error as the door's caller would see it (parameters named as the door's caller wrote them). */
  refusal(e: unknown): unknown;
}

/** How a line's job is submitted (see SubmitMode). */
export type LineMode = 'async' | 'batch';

const hopsOf = (plan: { provider: string }[]) => plan.map((c) => c.provider);
const providersOf = (plan: { provider: string }[]) => [...new Set(hopsOf(plan))];

const chat: LineEndpoint = {
  answerNeedsBody: false,
  async submit(deps, principal, body, mode, opts) {
    await submitChat(deps, principal, parseChatRequest(body), mode, opts);
  },
  providers: (deps, body) => providersOf(deps.router.plan(parseChatRequest(body)).plan),
  hops: (deps, body) => hopsOf(deps.router.plan(parseChatRequest(body)).plan),
  answer: (f) => (f?.type === 'done' ? f.result : undefined),
  // A chat completions caller gets the done frame's result as the worker wrote it (as on the door).
  rawAnswer: (raw) => rawDone(raw, { route: false })?.result,
  refusal: (e) => e,
};

function parseEmbeddings(body: unknown) {
  const r = EmbeddingsBody.safeParse(body);
  if (!r.success) throw fromZod(r.error);
  return r.data;
}

const embeddings: LineEndpoint = {
  answerNeedsBody: false,
  async submit(deps, principal, body, mode, opts) {
    await submitEmbeddings(deps, principal, parseEmbeddings(body), mode, opts);
  },
  providers: (deps, body) => providersOf(deps.router.planEmbeddings(parseEmbeddings(body)).plan),
  hops: (deps, body) => hopsOf(deps.router.planEmbeddings(parseEmbeddings(body)).plan),
  answer: (f) => (f?.type === 'embeddings' ? f.result : undefined),
  rawAnswer: (raw) => rawDone(raw, { route: false, type: 'embeddings' })?.result,
  refusal: (e) => e,
};

function parseResponses(body: unknown) {
  const r = ResponsesBody.safeParse(body);
  if (!r.success) throw fromZod(r.error);
  return r.data;
}

const responses: LineEndpoint = {
  answerNeedsBody: true,
  async submit(deps, principal, body, mode, opts) {
    const { chat, reasoning, names } = responsesChat(parseResponses(body));
    // Named as the line sent it; a 402 stays a QuotaRefusal (the driver waits on a held one).
    await submitChat(deps, principal, chat, mode, { ...opts, reasoning }).catch((e: unknown) => {
      throw e instanceof QuotaRefusal ? e : inDoorTerms(e, names);
    });
  },
  providers: (deps, body) => {
    const { chat, reasoning } = responsesChat(parseResponses(body));
    return providersOf(deps.router.plan(chat, { reasoning }).plan);
  },
  hops: (deps, body) => {
    const { chat, reasoning } = responsesChat(parseResponses(body));
    return hopsOf(deps.router.plan(chat, { reasoning }).plan);
  },
  answer: (f, body) => (f?.type === 'done' ? toResponse(parseResponses(body), f.result, f.at) : undefined),
  refusal: (e) => inDoorTerms(e, RESPONSES_PARAMS),
};

const ENDPOINTS: Record<BatchEndpoint, LineEndpoint> = {
  '/v1/chat/completions': chat,
  '/v1/embeddings': embeddings,
  '/v1/responses': responses,
};

/** The batch endpoint's line handling (a batch row's endpoint is one of BATCH_ENDPOINTS). */
export function lineEndpoint(endpoint: string): LineEndpoint {
  const e = (ENDPOINTS as Record<string, LineEndpoint | undefined>)[endpoint];
  if (!e) throw new Error(`not a batch endpoint: ${endpoint}`);
  return e;
}
