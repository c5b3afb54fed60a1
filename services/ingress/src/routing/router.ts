import {
  chatRefusal,
  modelRefusal,
  dimensionsRefusal,
  embeddingsRefusal,
  hasEmbeddings,
  type Refusal,
  unsupportedRefusal,
} from '@faregate/catalog/capabilities';
import type { ChatRequest } from '@faregate/contracts/chat';
import { type EmbeddingsRequest, embeddingInputs } from '@faregate/contracts/embeddings';
import { asksReasoning, requestedMaxTokens } from '@faregate/contracts/chat';
import { GatewayError } from '@faregate/contracts/errors';
import { inLegacyTerms } from '@faregate/contracts/legacy-functions';
import type { RouteCandidate } from '@faregate/contracts/jobs';
import { maxCallCostMicros } from '@faregate/catalog/prices';
import { anthropicMaxTokens } from '@faregate/providers/anthropic/request';
import {
  inputBound,
  measureEmbeddingsInput,
  measurePrompt,
  type PromptMeasure,
  utf8Bytes,
} from '@faregate/catalog/tokens';
import type { ModelDirectory, ModelEntry } from './directory.ts';

/** What a door's request asks of its route beyond the chat request itself (the door's own meaning). */
export interface DoorAsks {
  /** The door's parameter that asked for reasoning (`thinking`, `reasoning.effort`): only reasoning models serve it. */
  reasoning?: string | undefined;
  /**
   * Where an Anthropic prefill is (`messages.N`: a last assistant turn the answer goes on from, on
   * `/v1/messages`): only Anthropic models go on from one. Another model would answer the
   * conversation anew, and the caller would join its answer to the prefill.
   */
  prefill?: string | undefined;
}

export interface RoutePlan {
  plan: RouteCandidate[];
  entries: ModelEntry[];
  /**
   * The most one provider call of the request may cost on any candidate (µUSD): an upper bound of
   * its prompt tokens and its output cap at each candidate's price. Admission holds a multiple of it
   * (one per call the job may make, see `holdCalls`).
   */
  callMicros: bigint;
  /** Upper bound of the prompt tokens on any candidate. */
  inputTokensBound: number;
  /** Each candidate's own `callMicros` and prompt bound (parallel to `plan`), so a narrowed route is costed anew. */
  costs: { micros: bigint; inputTokens: number }[];
  /**
   * The model asked for has no live pool and its routing-file fallbacks stand in for it (they are
   * the route's targets): the error to answer (the pool's 503) when none of them may be used. A key
   * limited by `allowed_models` never takes a stand-in for the model it named.
   */
  standingIn?: GatewayError;
  /**
   * How many of the first candidates are the model asked for (its providers, or `auto`'s choices);
   * the rest are the routing file's fallbacks.
   */
  targets: number;
}

type Table<T> = Record<string, T> | ReadonlyMap<string, T>;

/** A route's bounds from its candidates' own: the dearest call, the largest prompt. */
function costBounds(costs: RoutePlan['costs']): Pick<RoutePlan, 'callMicros' | 'inputTokensBound'> {
  let callMicros = 0n;
  let inputTokensBound = 0;
  for (const c of costs) {
    if (c.micros > callMicros) callMicros = c.micros;
    inputTokensBound = Math.max(inputTokensBound, c.inputTokens);
  }
  return { callMicros, inputTokensBound };
}

/** A model id `/v1/models` offers (see `Router.listing`). */
export interface ListedModel {
  /** What the caller names: `provider/model`, or a routing-file alias. */
  id: string;
  entry: ModelEntry;
  /** The served model an alias or other name resolves to (`provider/model`). */
  resolvesTo?: string;
  routable: boolean;
  /** Why a listed model cannot be called (only listed with `?all=true`). */
  reason?: string;
}

const UNPRICED =
  'no price configured: the gateway refuses unpriced models (price it in the routing file, or set ALLOW_UNPRICED_MODELS=true)';

export interface RouterOptions {
  allowUnpriced: boolean;
  /** Explicit fallback chains: `provider/model` → further candidates (issue: worker pools). */
  fallbacks?: Table<string[]>;
  /** Extra model names → `provider/model` or a bare name. */
  aliases?: Table<string>;
  /** How many candidates `auto` may try. */
  autoCandidates?: number;
  /** Pools the deployment runs: one that is not live (yet) answers 503 rather than 404. */
  expectedPools?: readonly string[];
}

/** Own entries only, in a `Map`: a caller's model name must never reach an inherited property. */
const toMap = <T>(t: Table<T> | undefined): ReadonlyMap<string, T> =>
  t instanceof Map ? t : new Map(Object.entries(t ?? {}));

/** Models the caller may name to let the gateway choose the cheapest capable one. */
export const AUTO_MODELS = new Set(['auto', 'faregate/auto']);

/**
 * Whether a key may name `auto`: always without `allowed_models`; with a list, only when it names
 * `auto` (either spelling). The one rule for routing (`Router.permitted`) and the model listing.
 */
export const autoAllowed = (allowed: readonly string[] | null | undefined): boolean =>
  !allowed || allowed.some((n) => AUTO_MODELS.has(n));

/** Capabilities a request needs from a model. */
export function requiredCapabilities(req: ChatRequest): string[] {
  const caps: string[] = [];
  if (req.tools?.length) caps.push('tools');
  // `auto` picks a model the catalog lists as reasoning when reasoning is asked for (a self-hosted
  // one named by the caller may still take it: askedReasoning).
  if (asksReasoning(req.reasoning_effort)) caps.push('reasoning');
  if (req.response_format?.type === 'json_schema') caps.push('json_schema');
  const hasImage = req.messages.some(
    (m) => 'content' in m && Array.isArray(m.content) && m.content.some((p) => p.type === 'image_url'),
  );
  if (hasImage) caps.push('vision');
  return caps;
}

const target = (e: ModelEntry) => ({ provider: e.provider, model: e.id });

/** The most one call may cost on `e` (0 for an unpriced model, only routed when allowed). */
function maxCostMicros(e: ModelEntry, prompt: PromptMeasure, maxOut: number): bigint {
  if (!e.price) return 0n;
  return maxCallCostMicros(e.price, inputBound(prompt, target(e)), maxOut);
}

export class Router {
  readonly #dir: ModelDirectory;
  readonly #opts: RouterOptions;
  readonly #aliases: ReadonlyMap<string, string>;
  readonly #fallbacks: ReadonlyMap<string, string[]>;
  /** The fallback chain a served model's other names resolve to (see `#fallbacksOf`). */
  readonly #resolvedFallbacks = new WeakMap<ModelEntry, string[]>();

  constructor(dir: ModelDirectory, opts: RouterOptions) {
    this.#dir = dir;
    this.#opts = opts;
    this.#aliases = toMap(opts.aliases);
    this.#fallbacks = toMap(opts.fallbacks);
  }

  /**
   * What `/v1/models` offers: every model id a caller can name, each usable as listed. Served ids;
   * the other names a served model answers to (undated, catalog ids) with the id they resolve to;
   * the routing file's aliases. With `all`, also what is served but refused (unpriced), flagged
   * `routable: false` with the reason.
   */
  listing(all = false): ListedModel[] {
    const out: ListedModel[] = [];
    const unpriced = (e: ModelEntry) => !e.price && !this.#opts.allowUnpriced;
    const add = (l: ListedModel) => {
      if (l.routable || all) out.push(l);
    };
    for (const e of this.#dir.entries) {
      add(
        unpriced(e)
          ? { id: `${e.provider}/${e.id}`, entry: e, routable: false, reason: UNPRICED }
          : { id: `${e.provider}/${e.id}`, entry: e, routable: true },
      );
    }
    for (const { provider, name, entry } of this.#dir.names()) {
      const resolvesTo = `${entry.provider}/${entry.id}`;
      add(
        unpriced(entry)
          ? { id: `${provider}/${name}`, entry, resolvesTo, routable: false, reason: UNPRICED }
          : { id: `${provider}/${name}`, entry, resolvesTo, routable: true },
      );
    }
    for (const name of this.#aliases.keys()) {
      try {
        // What the alias resolves to for an empty prompt (`auto`: its cheapest chat model).
        const empty = { model: name, messages: [{ role: 'user' as const, content: '' }] };
        const prompt = measurePrompt(empty);
        const e = this.#resolve(name, prompt, () => this.#auto(empty, prompt))[0];
        if (e) out.push({ id: name, entry: e, resolvesTo: `${e.provider}/${e.id}`, routable: true });
      } catch (err) {
        if (!all || !(err instanceof GatewayError)) continue;
        const target = this.#aliases.get(name) ?? '';
        const slash = target.indexOf('/');
        const e =
          slash > 0
            ? this.#dir.find(target.slice(0, slash), target.slice(slash + 1))
            : this.#dir.findAll(target)[0];
        if (e)
          out.push({
            id: name,
            entry: e,
            resolvesTo: `${e.provider}/${e.id}`,
            routable: false,
            reason: err.message,
          });
      }
    }
    return out;
  }

  /**
   * A chat request's route: the models its name resolves to (alias, `provider/model`, a bare name on
   * every live provider, `auto`), less embedding models and candidates that cannot honour one of
   * its parameters (capabilities.ts); none left is a 400 naming the parameter and the provider.
   */
  plan(req: ChatRequest, door: DoorAsks = {}): RoutePlan {
    toolChoiceCheck(req);
    toolResultsCheck(req);
    const prompt = measurePrompt(req);
    const {
      entries: all,
      targets,
      standingIn,
    } = this.#resolveRoute(req.model, prompt, () => this.#auto(req, prompt, door));
    let entries = all.filter((e) => !e.capabilities.includes('embeddings'));
    if (entries.length === 0) {
      throw new GatewayError({
        code: 'invalid_request_error',
        message: `The model \`${req.model}\` is an embeddings model: use POST /v1/embeddings.`,
        param: 'model',
      });
    }
    const image = firstImage(req);
    entries = honouring(
      entries,
      targets,
      (e) =>
        (image ? visionRefusal(e, image) : undefined) ??
        chatRefusal(e.kind, e.provider, req) ??
        (e.catalogued ? modelRefusal(e.kind, e, req) : undefined) ??
        inLegacyTerms(req.legacy_functions === true, unsupportedRefusal(e.unsupported, e.provider, req)) ??
        outputRefusal(e, req) ??
        askedReasoning(e, req, door) ??
        prefillRefusal(e, door),
    );
    // Predicted tokens the answer rejects are billed as output on top of it (OpenAI's Predicted
    // Outputs): the hold covers them too, at their text's byte length (a token bound).
    const predicted = req.prediction ? utf8Bytes(JSON.stringify(req.prediction.content)) : 0;
    return {
      ...this.#costed(entries, targets, prompt, (e) => maxOutputOf(e, req), req.n ?? 1, predicted),
      standingIn,
    };
  }

  /**
   * An embeddings request's route: the same name resolution, only embedding models of protocols
   * that have an embeddings API and can take the request as sent; the hold covers its input tokens
   * at the embedding price (no output).
   */
  planEmbeddings(req: EmbeddingsRequest): RoutePlan {
    const prompt = measureEmbeddingsInput(embeddingInputs(req));
    const { entries: all, targets, standingIn } = this.#resolveRoute(req.model, prompt, () => []);
    const noApi = all.find((e) => !hasEmbeddings(e.kind));
    let entries = all.filter((e) => hasEmbeddings(e.kind));
    if (entries.length === 0 && noApi) {
      const r = embeddingsRefusal(noApi.kind, noApi.provider, req);
      throw new GatewayError({ code: 'invalid_request_error', message: r?.message ?? '', param: 'model' });
    }
    entries = entries.filter((e) => e.capabilities.includes('embeddings'));
    if (entries.length === 0) {
      throw new GatewayError({
        code: 'invalid_request_error',
        message: `The model \`${req.model}\` is not an embeddings model: use an embedding model (GET /v1/models lists them).`,
        param: 'model',
      });
    }
    entries = honouring(
      entries,
      targets,
      (e) =>
        embeddingsRefusal(e.kind, e.provider, req) ??
        dimensionsRefusal(e.dimensions, `${e.provider}/${e.id}`, req),
    );
    return { ...this.#costed(entries, targets, prompt, () => 0), standingIn };
  }

  /** The most one call of the request may cost on any candidate, and its prompt-token bound. */
  #costed(
    entries: ModelEntry[],
    targets: ReadonlySet<ModelEntry>,
    prompt: PromptMeasure,
    maxOutput: (e: ModelEntry) => number,
    choices = 1,
    extraOutput = 0,
  ): RoutePlan {
    const costs = entries.map((e) => {
      // Every choice (`n`) may use the whole output cap: the hold covers them all.
      const maxOut = maxOutput(e) * choices + extraOutput;
      return { micros: maxCostMicros(e, prompt, maxOut), inputTokens: inputBound(prompt, target(e)) };
    });
    return {
      plan: entries.map((e) => ({ provider: e.provider, model: e.id, contextWindow: e.contextWindow })),
      entries,
      ...costBounds(costs),
      costs,
      targets: entries.filter((e) => targets.has(e)).length,
    };
  }

  /**
   * The candidates of `route` a key limited to the model names `allowed` may use: each must be a
   * model one of those names resolves to (as a request naming it would: an alias, `provider/model`,
   * an undated or dated id, a bare name on any provider). The name the caller asked for, when it is
   * on the list, allows the models it resolves to (the route's targets, `auto`'s choice included),
   * never the routing file's fallbacks, which must be allowed by a name of their own. `auto` is
   * a name like any other: a list that does not name it allows none of its choices (`autoAllowed`).
   */
  permitted(route: RoutePlan, asked: string, allowed: readonly string[]): RoutePlan {
    const named = this.#named(allowed);
    // The name as routing read it (trimmed; an alias of `auto` is `auto`).
    const name = asked.trim();
    const auto = AUTO_MODELS.has(this.#aliases.get(name) ?? name);
    // Stand-ins for a lost pool's model are fallbacks: allowed only by a name of their own.
    const targetsAllowed = (allowed.includes(name) || (auto && autoAllowed(allowed))) && !route.standingIn;
    // `auto` not on the list (nor the alias that named it): none of its choices, listed or not.
    const refused = auto && !autoAllowed(allowed) && !allowed.includes(name);
    const keep = route.plan.map(
      (_, i) =>
        !refused && ((i < route.targets && targetsAllowed) || named.has(route.entries[i] as ModelEntry)),
    );
    const pick = <T>(xs: T[]) => xs.filter((_, i) => keep[i]);
    // Costed anew: the hold (and a token count) covers only the candidates the key may call.
    const costs = pick(route.costs);
    return {
      plan: pick(route.plan),
      entries: pick(route.entries),
      ...costBounds(costs),
      costs,
      targets: keep.slice(0, route.targets).filter(Boolean).length,
      ...(route.standingIn ? { standingIn: route.standingIn } : {}),
    };
  }

  /**
   * What a key limited to the model names `allowed` sees in `GET /v1/models`: the names on its list,
   * and every other name of a model those names resolve to (exactly what `permitted` lets it call).
   */
  visible(listed: ListedModel[], allowed: readonly string[]): ListedModel[] {
    const named = this.#named(allowed);
    return listed.filter((l) => allowed.includes(l.id) || named.has(l.entry));
  }

  /** The models the names `allowed` resolve to (an alias, `provider/model`, a bare name on any provider). */
  #named(allowed: readonly string[]): Set<ModelEntry> {
    const named = new Set<ModelEntry>();
    for (const raw of allowed) {
      const name = this.#aliases.get(raw.trim()) ?? raw.trim();
      const slash = name.indexOf('/');
      if (slash > 0) {
        const e = this.#dir.find(name.slice(0, slash), name.slice(slash + 1));
        if (e) named.add(e);
      } else for (const e of this.#dir.findAll(name)) named.add(e);
    }
    return named;
  }

  /** The models a name resolves to, its fallbacks after it; only priced ones unless unpriced are allowed. */
  #resolve(model: string, prompt: PromptMeasure, auto: () => ModelEntry[]): ModelEntry[] {
    return this.#resolveRoute(model, prompt, auto).entries;
  }

  /**
   * The models a name resolves to (`targets`: what the caller named, or `auto`'s choice), then the
   * routing file's fallbacks of the first.
   */
  #resolveRoute(
    model: string,
    prompt: PromptMeasure,
    auto: () => ModelEntry[],
  ): { entries: ModelEntry[]; targets: ReadonlySet<ModelEntry>; standingIn?: GatewayError } {
    const asked = model.trim();
    const name = this.#aliases.get(asked) ?? asked;
    let entries: ModelEntry[];
    let standingIn: GatewayError | undefined;
    if (AUTO_MODELS.has(name)) {
      entries = auto();
      if (entries.length === 0) throw notFound(name);
    } else if (name.includes('/')) {
      const slash = name.indexOf('/');
      const provider = name.slice(0, slash);
      const id = name.slice(slash + 1);
      const e = this.#dir.find(provider, id);
      if (e) entries = [e];
      else {
        // A snapshot no one lists (`gemini-2.5-flash-999`) is no model, lost pool or not.
        if (this.#dir.prices.pinsSnapshot(provider, id)) throw notFound(name);
        const waiting = this.#waiting([provider]);
        if (!waiting) throw notFound(name);
        entries = this.#standIns([name, ...this.#canonical(provider, id)]);
        if (entries.length === 0) throw waiting;
        standingIn = waiting;
      }
    } else {
      // A bare name: every live provider that serves it, cheapest first.
      entries = this.#dir.findAll(name).sort((a, b) => cheapness(a, prompt) - cheapness(b, prompt));
      if (entries.length === 0) {
        const down = this.#absent().filter(
          (p) => this.#dir.catalogEntry(p, name) && !this.#dir.prices.pinsSnapshot(p, name),
        );
        const waiting = this.#waiting(down);
        if (!waiting) throw notFound(name);
        entries = this.#standIns([
          name,
          ...down.flatMap((p) => [`${p}/${name}`, ...this.#canonical(p, name)]),
        ]);
        if (entries.length === 0) throw waiting;
        standingIn = waiting;
      }
    }
    const primary = entries[0]!;
    const targets = new Set(entries);
    for (const extra of this.#fallbacksOf(primary, name)) {
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
    return { entries, targets, ...(standingIn ? { standingIn } : {}) };
  }

  /**
   * The routing file's fallback chain of a model: keyed by any name of it (the served, dated id; the
   * name asked for; an undated or catalog name that resolves to the same served model), so
   * `anthropic/claude-haiku-4-5` in the file applies to the `claude-haiku-4-5-20251001` a provider serves.
   */
  #fallbacksOf(primary: ModelEntry, asked: string): string[] {
    const direct = this.#fallbacks.get(`${primary.provider}/${primary.id}`) ?? this.#fallbacks.get(asked);
    if (direct) return direct;
    // Resolving every key by name is not for each request: remembered per entry (a directory
    // refresh makes new entries, so what is remembered follows the pools' listings).
    const known = this.#resolvedFallbacks.get(primary);
    if (known) return known;
    let chain: string[] = [];
    for (const [key, c] of this.#fallbacks) {
      const slash = key.indexOf('/');
      if (slash > 0 && this.#dir.find(key.slice(0, slash), key.slice(slash + 1)) === primary) {
        chain = c;
        break;
      }
    }
    this.#resolvedFallbacks.set(primary, chain);
    return chain;
  }

  /** `provider/<catalog id>` of a model name, when the catalog knows it by another name (a dated id). */
  #canonical(provider: string, id: string): string[] {
    const c = this.#dir.prices.canonicalId(provider, id);
    return c && c !== id ? [`${provider}/${c}`] : [];
  }

  /**
   * A model whose pool has no live worker (gone, or every worker frozen) is served by its routing
   * file fallbacks that are live, in order: the first chain found under any of its `names`.
   */
  #standIns(names: string[]): ModelEntry[] {
    for (const n of names) {
      const chain = this.#fallbacks.get(n);
      if (!chain) continue;
      const live: ModelEntry[] = [];
      for (const f of chain) {
        const slash = f.indexOf('/');
        const e = slash > 0 ? this.#dir.find(f.slice(0, slash), f.slice(slash + 1)) : undefined;
        if (e && !live.includes(e)) live.push(e);
      }
      return live;
    }
    return [];
  }

  /**
   * Pools the deployment runs (or ran) that have no live worker now: expected (EXPECTED_POOLS), or
   * registered once and lost since (with or without EXPECTED_POOLS; this process may have started
   * after they were lost).
   */
  #absent(): string[] {
    return [...new Set([...(this.#opts.expectedPools ?? []), ...this.#dir.lostPools()])].filter((p) =>
      this.#isAbsent(p),
    );
  }

  /**
   * A pool the deployment runs (or ran) with no live worker now. (A pool seen live once and gone
   * since is among the lost ones: its name stays in the set of pools, its record lapsed.)
   */
  #isAbsent(p: string): boolean {
    return (
      !this.#dir.isLive(p) &&
      ((this.#opts.expectedPools ?? []).includes(p) || this.#dir.lostPools().includes(p))
    );
  }

  /**
   * The error for a request only these pools could serve, when one of them is expected (or was
   * live) but has no worker now: 503 with retry-after, naming the pool. Undefined: not a pool we wait for.
   */
  #waiting(providers: string[]): GatewayError | undefined {
    const down = providers.filter((p) => this.#isAbsent(p));
    if (down.length === 0) return undefined;
    const names = down.join(', ');
    return new GatewayError({
      code: 'provider_unavailable',
      message: `The ${names} pool${down.length > 1 ? 's have' : ' has'} no live worker yet (starting, or all of its workers are gone), so the gateway cannot serve this model now. Retry shortly.`,
      param: 'model',
      retryable: true,
      retryAfterMs: 1_000,
    });
  }

  /** Cost-based routing: the cheapest live, priced models that have what the request needs. */
  #auto(req: ChatRequest, prompt: PromptMeasure, door: DoorAsks = {}): ModelEntry[] {
    const caps = requiredCapabilities(req);
    const out = requestedMaxTokens(req) ?? 512;
    const fit = this.#dir.entries.filter(
      (e) =>
        e.price &&
        !e.capabilities.includes('embeddings') &&
        caps.every((c) => e.capabilities.includes(c)) &&
        // What `plan` would refuse on this model (its protocol's and its host's limits): not a choice.
        chatRefusal(e.kind, e.provider, req) === undefined &&
        (!e.catalogued || modelRefusal(e.kind, e, req) === undefined) &&
        unsupportedRefusal(e.unsupported, e.provider, req) === undefined &&
        askedReasoning(e, req, door) === undefined &&
        prefillRefusal(e, door) === undefined &&
        outputRefusal(e, req) === undefined &&
        e.contextWindow >= inputBound(prompt, target(e)) + out,
    );
    if (fit.length === 0) {
      const waiting = this.#waiting(this.#absent());
      if (waiting) throw waiting;
      throw new GatewayError({
        code: 'model_not_found',
        message: `No available model can serve this request (needs: ${caps.join(', ') || 'chat'}).`,
        param: 'model',
      });
    }
    fit.sort((a, b) => maxCostMicrosNum(a, prompt, out) - maxCostMicrosNum(b, prompt, out));
    return fit.slice(0, this.#opts.autoCandidates ?? 3);
  }
}

const cheapness = (e: ModelEntry, prompt: PromptMeasure) => maxCostMicrosNum(e, prompt, 512);
const maxCostMicrosNum = (e: ModelEntry, prompt: PromptMeasure, o: number) =>
  e.price ? Number(maxCostMicros(e, prompt, o)) : Number.MAX_SAFE_INTEGER;

/**
 * The candidates that can honour the request: a fallback that cannot is left out rather than fail
 * the request later. When no target (a model the caller named, or `auto`'s choice) can, the first
 * target's refusal is a 400 naming the parameter: a fallback never stands in for the model asked
 * for because that one cannot take the request (a probe got gpt-4o-mini's three choices for a
 * claude-haiku-4-5 request with `n: 3`).
 */
function honouring(
  entries: ModelEntry[],
  targets: ReadonlySet<ModelEntry>,
  refusal: (e: ModelEntry) => Refusal | undefined,
): ModelEntry[] {
  let first: Refusal | undefined;
  let targetOk = false;
  const ok = entries.filter((e) => {
    const r = refusal(e);
    if (targets.has(e)) {
      first ??= r;
      if (r === undefined) targetOk = true;
    }
    return r === undefined;
  });
  if (!targetOk && first) {
    throw new GatewayError({ code: 'invalid_request_error', message: first.message, param: first.param });
  }
  return ok;
}

/**
 * A `max_tokens` (or `max_completion_tokens`) above what the model can write, refused as its provider
 * would refuse it, but before any call or hold. Only when the model's limit is known (discovered, or
 * in the catalog): a self-hosted model's guessed default refuses nothing.
 */
function outputRefusal(e: ModelEntry, req: ChatRequest): Refusal | undefined {
  const max = requestedMaxTokens(req);
  if (max === undefined || !e.outputLimitKnown || max <= e.maxOutputTokens) return undefined;
  const param = req.max_completion_tokens != null ? 'max_completion_tokens' : 'max_tokens';
  return {
    param,
    message: `'${param}' is too large: ${max}. The model \`${e.provider}/${e.id}\` writes at most ${e.maxOutputTokens} tokens.`,
  };
}

/** Where the request's first image is (`messages.3.content.1`), or undefined. */
function firstImage(req: ChatRequest): string | undefined {
  for (const [i, m] of req.messages.entries()) {
    const j = Array.isArray(m.content) ? m.content.findIndex((p) => p.type === 'image_url') : -1;
    if (j >= 0) return `messages.${i}.content.${j}`;
  }
  return undefined;
}

/**
 * Images to a model the catalog lists without vision (it would answer without seeing them),
 * naming the first image part.
 */
function visionRefusal(e: ModelEntry, at: string): Refusal | undefined {
  if (!e.catalogued || e.capabilities.includes('vision')) return undefined;
  return {
    param: at,
    message: `${e.provider}/${e.id} cannot see images (the catalog lists it without vision): send text only, or choose a vision model.`,
  };
}

/**
 * A door's reasoning parameter (Anthropic's `thinking`, the Responses API's `reasoning`, chat's
 * `reasoning_effort`) goes only to models the catalog lists as reasoning models. (Chat's
 * `reasoning_effort` also passes to models the catalog does not know, and to self-hosted ones.)
 */
function askedReasoning(e: ModelEntry, req: ChatRequest, door: DoorAsks): Refusal | undefined {
  if (door.reasoning) return reasoningRefusal(e, door.reasoning);
  // Chat's reasoning_effort: refused where the catalog knows the model does not reason; a model it
  // does not know (new, or self-hosted) may. `none` asks for what such a model does anyway: the
  // attempt leaves it out for them (attempt.ts, requestFor).
  if (asksReasoning(req.reasoning_effort) && e.catalogued && !e.selfHosted)
    return reasoningRefusal(e, 'reasoning_effort');
  return undefined;
}

/**
 * The most output tokens one answer of `req` may have on `e`, what its hold covers: what the call
 * asks the provider for (Anthropic requires max_tokens, which its adapter decides:
 * `anthropicMaxTokens`), else the caller's limit, else the model's. The model's output limit caps
 * it only when known (discovered or in the catalog): a model the gateway knows nothing of is sent
 * the caller's limit as it is, so it is held as it is (before: capped at a 4,096 guess).
 */
function maxOutputOf(e: ModelEntry, req: ChatRequest): number {
  const asked = e.kind === 'anthropic' ? anthropicMaxTokens(req, e.id) : requestedMaxTokens(req);
  const out = asked ?? e.maxOutputTokens;
  return e.outputLimitKnown ? Math.min(out, e.maxOutputTokens) : out;
}

/** An Anthropic prefill (DoorAsks.prefill) to a model of another protocol, which would not go on from it. */
function prefillRefusal(e: ModelEntry, door: DoorAsks): Refusal | undefined {
  if (!door.prefill || e.kind === 'anthropic') return undefined;
  return {
    param: door.prefill,
    // Named in the message too: only `/v1/messages` sends one, and Anthropic's errors have no param.
    message: `${door.prefill}: ${e.provider}/${e.id} cannot go on from a prefill (a last assistant turn): only Anthropic models continue one, others answer anew. End with a user turn, or choose a Claude model.`,
  };
}

function reasoningRefusal(e: ModelEntry, param: string): Refusal | undefined {
  if (e.capabilities.includes('reasoning')) return undefined;
  return {
    param,
    message: `${param} is not supported by ${e.provider}/${e.id}: it is not a reasoning model. Leave ${param} out, or choose a model that reasons.`,
  };
}

function notFound(name: string): GatewayError {
  return new GatewayError({
    code: 'model_not_found',
    message: `The model \`${name}\` does not exist or no configured provider serves it. GET /v1/models lists the available models.`,
    param: 'model',
  });
}

/**
 * Every tool call of an assistant turn is answered by a tool message before the conversation goes
 * on, and every tool message answers a call of the assistant turn right before its run of tool
 * messages, as OpenAI, Anthropic and Gemini all require (each refuses the request otherwise,
 * naming it; OpenAI's words). A call is answered once: a second tool message for it is refused.
 */
function toolResultsCheck(req: ChatRequest): void {
  const { messages } = req;
  // The calls the tool messages in hand may answer: the last assistant turn's, while only tool
  // messages have followed it.
  let calls: Set<string> | undefined;
  // The calls those tool messages have answered: a second answer to one call is refused.
  const answered = new Set<string>();
  for (let i = 0; i < messages.length; i++) {
    const m = messages[i];
    if (m?.role === 'tool') {
      if (!calls)
        throw new GatewayError({
          code: 'invalid_request_error',
          message:
            "Invalid parameter: messages with role 'tool' must be a response to a preceding message with 'tool_calls'.",
          param: `messages.${i}.role`,
        });
      if (!calls.has(m.tool_call_id))
        throw new GatewayError({
          code: 'invalid_request_error',
          message: `Invalid parameter: 'tool_call_id' of '${m.tool_call_id.slice(0, 64)}' not found in 'tool_calls' of previous message.`,
          param: `messages.${i}.tool_call_id`,
        });
      if (answered.has(m.tool_call_id))
        throw new GatewayError({
          code: 'invalid_request_error',
          message: `Invalid parameter: 'tool_call_id' of '${m.tool_call_id.slice(0, 64)}' is answered by more than one message with role 'tool': each tool call takes a single response message.`,
          param: `messages.${i}.tool_call_id`,
        });
      answered.add(m.tool_call_id);
      continue;
    }
    calls = undefined;
    answered.clear();
    if (m?.role !== 'assistant' || !m.tool_calls?.length) continue;
    calls = new Set(m.tool_calls.map((c) => c.id));
    const open = new Set(calls);
    let j = i + 1;
    for (; j < messages.length; j++) {
      const t = messages[j];
      if (t?.role !== 'tool') break;
      open.delete(t.tool_call_id);
    }
    if (open.size > 0)
      throw new GatewayError({
        code: 'invalid_request_error',
        message: `An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'. The following tool_call_ids did not have response messages: ${[...open].slice(0, 8).join(', ')}`,
        param: `messages.${i}.tool_calls`,
      });
  }
}

/**
 * A tool choice that names a function must name one of the request's tools, and `required` needs
 * tools, as OpenAI answers (a provider would fail the call, or answer without the tool).
 */
function toolChoiceCheck(req: ChatRequest): void {
  const c = req.tool_choice;
  if (c === undefined || c === 'auto' || c === 'none') return;
  const names = new Set((req.tools ?? []).map((t) => t.function.name));
  if (c === 'required' && names.size === 0)
    throw new GatewayError({
      code: 'invalid_request_error',
      message: "Invalid value for 'tool_choice': 'required' needs at least one tool in 'tools'.",
      param: 'tool_choice',
    });
  if (typeof c === 'object' && !names.has(c.function.name))
    throw new GatewayError({
      code: 'invalid_request_error',
      message: `Invalid value for 'tool_choice': no tool named '${c.function.name.slice(0, 64)}' in 'tools'.`,
      param: 'tool_choice',
    });
}
