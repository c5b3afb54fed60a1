import type { ChatRequest } from '@faregate/contracts/chat';
import { requestedMaxTokens } from '@faregate/contracts/chat';
import { GatewayError } from '@faregate/contracts/errors';
import type { RouteCandidate } from '@faregate/contracts/jobs';
import { tokenCostMicros } from '@faregate/catalog/money';
import type { ModelDirectory, ModelEntry } from './directory.ts';

export interface RoutePlan {
  plan: RouteCandidate[];
  entries: ModelEntry[];
  /** Maximum cost of the request on any candidate (µUSD): what admission holds. */
  holdMicros: bigint;
  estimatedInputTokens: number;
}

export interface RouterOptions {
  allowUnpriced: boolean;
  /** Explicit fallback chains: `provider/model` → further candidates (issue: worker pools). */
  fallbacks?: Record<string, string[]>;
  /** Extra model names → `provider/model` or a bare name. */
  aliases?: Record<string, string>;
  /** How many candidates `auto` may try. */
  autoCandidates?: number;
}

/** Models the caller may name to let the gateway choose the cheapest capable one. */
export const AUTO_MODELS = new Set(['auto', 'faregate/auto']);

/**
 * A deliberately generous estimate of prompt tokens (≈3 bytes per token plus per-message and
 * per-image overhead). It sizes admission holds, so erring high is the safe side.
 */
export function estimateInputTokens(req: ChatRequest): number {
  let chars = 0;
  let images = 0;
  for (const m of req.messages) {
    chars += 16;
    const c = 'content' in m ? m.content : undefined;
    if (typeof c === 'string') chars += c.length;
    else if (Array.isArray(c)) {
      for (const p of c) {
        if (p.type === 'text') chars += p.text.length;
        else if (p.type === 'image_url') images++;
        else chars += JSON.stringify(p).length;
      }
    }
    if (m.role === 'assistant' && m.tool_calls) chars += JSON.stringify(m.tool_calls).length;
  }
  if (req.tools) chars += JSON.stringify(req.tools).length;
  if (req.response_format) chars += JSON.stringify(req.response_format).length;
  return Math.ceil(chars / 3) + images * 1600 + 8;
}

/** Capabilities a request needs from a model. */
export function requiredCapabilities(req: ChatRequest): string[] {
  const caps: string[] = [];
  if (req.tools?.length) caps.push('tools');
  if (req.response_format?.type === 'json_schema') caps.push('json_schema');
  const hasImage = req.messages.some(
    (m) => 'content' in m && Array.isArray(m.content) && m.content.some((p) => p.type === 'image_url'),
  );
  if (hasImage) caps.push('vision');
  return caps;
}

function maxCostMicros(e: ModelEntry, inputTokens: number, maxOut: number): bigint {
  if (!e.price) return 0n;
  return tokenCostMicros(inputTokens, e.price.inputPerM) + tokenCostMicros(maxOut, e.price.outputPerM);
}

export class Router {
  readonly #dir: ModelDirectory;
  readonly #opts: RouterOptions;

  constructor(dir: ModelDirectory, opts: RouterOptions) {
    this.#dir = dir;
    this.#opts = opts;
  }

  plan(req: ChatRequest): RoutePlan {
    const name = this.#opts.aliases?.[req.model.trim()] ?? req.model.trim();
    const inputTokens = estimateInputTokens(req);
    let entries: ModelEntry[];
    if (AUTO_MODELS.has(name)) {
      entries = this.#auto(req, inputTokens);
    } else if (name.includes('/')) {
      const slash = name.indexOf('/');
      const provider = name.slice(0, slash);
      const id = name.slice(slash + 1);
      const e = this.#dir.find(provider, id);
      if (!e) throw notFound(name);
      entries = [e];
    } else {
      // A bare name: every live provider that serves it, cheapest first.
      entries = this.#dir.findAll(name).sort((a, b) => cheapness(a, inputTokens) - cheapness(b, inputTokens));
      if (entries.length === 0) throw notFound(name);
    }
    const primary = entries[0]!;
    for (const extra of this.#opts.fallbacks?.[`${primary.provider}/${primary.id}`] ?? []) {
      const [p, ...rest] = extra.split('/');
      const e = this.#dir.find(p ?? '', rest.join('/'));
      if (e && !entries.includes(e)) entries.push(e);
    }
    if (!this.#opts.allowUnpriced) {
      const priced = entries.filter((e) => e.price);
      if (priced.length === 0) {
        throw new GatewayError({
          code: 'model_not_found',
          message: `The model \`${name}\` has no price configured, so the gateway refuses it. Configure a price or set ALLOW_UNPRICED_MODELS=true.`,
          param: 'model',
        });
      }
      entries = priced;
    }
    const asked = requestedMaxTokens(req);
    let hold = 0n;
    for (const e of entries) {
      const maxOut = Math.min(asked ?? e.maxOutputTokens, e.maxOutputTokens);
      const c = maxCostMicros(e, inputTokens, maxOut);
      if (c > hold) hold = c;
    }
    return {
      plan: entries.map((e) => ({ provider: e.provider, model: e.id, contextWindow: e.contextWindow })),
      entries,
      holdMicros: hold,
      estimatedInputTokens: inputTokens,
    };
  }

  /** Cost-based routing: the cheapest live, priced models that have what the request needs. */
  #auto(req: ChatRequest, inputTokens: number): ModelEntry[] {
    const caps = requiredCapabilities(req);
    const out = requestedMaxTokens(req) ?? 512;
    const fit = this.#dir.entries.filter(
      (e) => e.price && caps.every((c) => e.capabilities.includes(c)) && e.contextWindow >= inputTokens + out,
    );
    if (fit.length === 0) {
      throw new GatewayError({
        code: 'model_not_found',
        message: `No available model can serve this request (needs: ${caps.join(', ') || 'chat'}).`,
        param: 'model',
      });
    }
    fit.sort((a, b) => maxCostMicrosNum(a, inputTokens, out) - maxCostMicrosNum(b, inputTokens, out));
    return fit.slice(0, this.#opts.autoCandidates ?? 3);
  }
}

const cheapness = (e: ModelEntry, inputTokens: number) => maxCostMicrosNum(e, inputTokens, 512);
const maxCostMicrosNum = (e: ModelEntry, i: number, o: number) =>
  e.price ? Number(maxCostMicros(e, i, o)) : Number.MAX_SAFE_INTEGER;

function notFound(name: string): GatewayError {
  return new GatewayError({
    code: 'model_not_found',
    message: `The model \`${name}\` does not exist or no configured provider serves it. GET /v1/models lists the available models.`,
    param: 'model',
  });
}
