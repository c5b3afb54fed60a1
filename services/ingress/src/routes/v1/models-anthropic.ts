import { GatewayError } from '@faregate/contracts/errors';

/**
 * `GET /v1/models` in Anthropic's Models API shape, for Anthropic's SDKs (`models.list`,
 * `models.retrieve`): the models of OpenAI's shape that `/v1/messages` can use, in the same order,
 * paged by cursor (`limit`, `after_id`, `before_id`) as Anthropic pages them. Embedding models are
 * left out: this shape has no capabilities field to tell them apart, and the door refuses them.
 */

/** What Anthropic's shape takes from a model as OpenAI's shape lists it (`created`: unix seconds). */
export interface Listed {
  id: string;
  created: number;
  context_window: number;
  max_output_tokens: number;
  /** The catalog's capabilities (`embeddings` marks a model `/v1/messages` cannot use). */
  capabilities?: readonly string[];
}

export interface AnthropicModel {
  type: 'model';
  id: string;
  display_name: string;
  created_at: string;
  max_input_tokens: number;
  max_tokens: number;
}

export interface AnthropicModelPage {
  data: AnthropicModel[];
  has_more: boolean;
  first_id: string | null;
  last_id: string | null;
}

/** Whether Anthropic's shape has the model: what `/v1/messages` can use (no embedding model). */
const forMessages = (m: Listed): boolean => !m.capabilities?.includes('embeddings');

/**
 * One model in Anthropic's shape. The catalog names no model (it has ids, prices and limits), so
 * the display name is the id a caller uses; `created_at` is RFC 3339, as Anthropic's; the limits
 * are Anthropic's `max_input_tokens` (the context window) and `max_tokens` (the output cap). An
 * embedding model has none: a 404 (`not_found_error`), as for a model Anthropic does not list.
 */
export function anthropicModel(m: Listed): AnthropicModel {
  if (!forMessages(m))
    throw new GatewayError({
      code: 'model_not_found',
      message: `The model '${m.id}' is an embedding model: /v1/messages cannot use it, and this list leaves it out.`,
      param: 'model',
    });
  return {
    type: 'model',
    id: m.id,
    display_name: m.id,
    created_at: new Date(m.created * 1000).toISOString().replace('.000Z', 'Z'),
    max_input_tokens: m.context_window,
    max_tokens: m.max_output_tokens,
  };
}

const MAX_LIMIT = 1000;
const DEFAULT_LIMIT = 20;

const bad = (param: string, message: string) =>
  new GatewayError({ code: 'invalid_request_error', message, param });

/** A query parameter given once (a repeated one arrives as a list), or absent. */
function one(query: Record<string, unknown>, param: string): string | undefined {
  const v = query[param];
  if (v === undefined) return undefined;
  if (typeof v !== 'string')
    throw bad(param, `The query parameter '${param}' is given more than once; give it once.`);
  return v;
}

/**
 * A page of `all`'s models for `/v1/messages` (in its order), as Anthropic's list answers: the
 * `limit` models after `after_id`, or right before `before_id`, or the first ones. A cursor must be
 * an id of this list.
 */
export function anthropicPage(all: readonly Listed[], query: Record<string, unknown>): AnthropicModelPage {
  const listed = all.filter(forMessages);
  const rawLimit = one(query, 'limit');
  const afterId = one(query, 'after_id');
  const beforeId = one(query, 'before_id');
  let limit = DEFAULT_LIMIT;
  if (rawLimit !== undefined) {
    limit = /^\d{1,7}$/.test(rawLimit) ? Number(rawLimit) : Number.NaN;
    if (!(limit >= 1 && limit <= MAX_LIMIT))
      throw bad('limit', `Invalid value for 'limit': expected an integer from 1 to ${MAX_LIMIT}.`);
  }
  if (afterId !== undefined && beforeId !== undefined)
    throw bad('before_id', "Give at most one of 'after_id' and 'before_id'.");
  const at = (param: string, id: string) => {
    const i = listed.findIndex((m) => m.id === id);
    if (i < 0) throw bad(param, `Invalid value for '${param}': '${id}' is not a model of this list.`);
    return i;
  };
  let start: number;
  let end: number;
  let hasMore: boolean;
  if (beforeId !== undefined) {
    end = at('before_id', beforeId);
    start = Math.max(0, end - limit);
    hasMore = start > 0;
  } else {
    start = afterId === undefined ? 0 : at('after_id', afterId) + 1;
    end = Math.min(listed.length, start + limit);
    hasMore = end < listed.length;
  }
  const data = listed.slice(start, end).map(anthropicModel);
  return { data, has_more: hasMore, first_id: data[0]?.id ?? null, last_id: data.at(-1)?.id ?? null };
}
