import { GatewayError } from '@faregate/contracts/errors';
import { parseGoDuration } from './durations.ts';

/** Longest provider message we carry: enough to act on, too short to echo a prompt back. */
const MAX_MESSAGE = 300;
/** Scrubbing looks at no more than this much of a message (the rest is cut anyway). */
const MAX_SCAN = 2_000;

const ID_WORDS = 'organi[sz]ations?|workspaces?|accounts?|projects?|consumers?|tenants?|customers?';

/**
 * What in a provider's message belongs to the operator, not to the tenant who made the call: the
 * gateway's (partial) keys, and the operator's organization, project and account identifiers.
 * Each is replaced, in this order, by `[redacted]`.
 */
type Replacer = (match: string, ...groups: Array<string | undefined>) => string;
const IDENTIFIERS: Array<[RegExp, string | Replacer]> = [
  // Providers echo partial keys ("Incorrect API key provided: sk-abc***xyz").
  [/\b(sk|key|AIza|gsk|xai|pk)[-_A-Za-z0-9*]{8,}/g, '[redacted]'],
  // Emails (a Google service account, a billing contact).
  [/[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+/g, '[redacted]'],
  // A link's query string (`…/overview?project=123456`): the page stays, its parameters go.
  [/(\bhttps?:\/\/[^\s?#"'`<>)\]]+)[?#][^\s"'`<>)\]]*/g, '$1'],
  // Named fields: project_number:123456, consumer=…, org_id: "…", organization_id …
  [
    /\b(project_?(?:number|id)|projectId|projectNumber|consumer|organi[sz]ation_?id|org_?id|account_?id|accountId|workspace_?id|tenant_?id)(\s*[:=]\s*)(?!\[redacted\])['"`]?[^\s'"`,;)\]}]+['"`]?/gi,
    '$1$2[redacted]',
  ],
  // Google resource names: projects/123456, organizations/…, billingAccounts/…, consumers/….
  [
    /\b(projects|organizations|folders|billingAccounts|accounts|consumers|users|workspaces)\/[^\s/'"`,;)\]]+/gi,
    '$1/[redacted]',
  ],
  // OpenAI organizations (org-…), UUIDs (Anthropic organizations and workspaces), long numbers
  // (Google project numbers, account ids).
  [/\borg-[A-Za-z0-9_-]+/g, '[redacted]'],
  [/\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b/gi, '[redacted]'],
  [/\b\d{10,}\b/g, '[redacted]'],
  // Whatever names itself right after "organization" / "project" / "account" …: in brackets or
  // quotes ("your organization (abc)", "consumer 'x'"), or a token with a digit ("project 123456").
  [
    new RegExp(
      `\\b(${ID_WORDS})(\\s+(?:id|ID|number)\\b)?(\\s*:?\\s*)(?:\\(([^()\\s]{1,100})\\)|'([^'\\s]{1,100})'|"([^"\\s]{1,100})"|\`([^\`\\s]{1,100})\`|(?=[\\w.-]*\\d)([A-Za-z0-9][\\w.-]*))`,
      'gi',
    ),
    (all, word, id, gap, paren, q1, q2, q3, bare) => {
      const token = paren ?? q1 ?? q2 ?? q3 ?? bare;
      if (token === undefined || token === '[redacted]') return all;
      const open =
        paren !== undefined
          ? '('
          : q1 !== undefined
            ? "'"
            : q2 !== undefined
              ? '"'
              : q3 !== undefined
                ? '`'
                : '';
      const close = paren !== undefined ? ')' : open;
      return `${word}${id ?? ''}${gap}${open}[redacted]${close}`;
    },
  ],
];

/** Words that say a message is about the operator's limits (their figures are the operator's). */
const ABOUT_LIMITS = /quota|rate.?limit|\bper (?:min|minute|hour|day)\b|\b(?:RPM|TPM|RPD|TPD|ITPM|OTPM)\b/i;

/** The operator's account-wide figures, in a message about limits. */
const FIGURES: Array<[RegExp, string]> = [
  // OpenAI: "(RPM): Limit 500, Used 500, Requested 1."
  [/:?\s*\bLimit:?\s*[\d,.]*\d(?:\s*,\s*(?:Used|Requested):?\s*[\d,.]*\d)*/gi, ''],
  // Anthropic: "… of 80,000 input tokens per minute"
  [/\bof\s+[\d,.]*\d\s+((?:input |output )?(?:tokens|requests|connections)\s+per\b)/gi, 'of $1'],
  // Google and others: "limit: 10", "quotaValue: 250", "current usage: 95"
  [
    /\b(limit|quota ?value|quota_value|usage|current usage|used|remaining|requested)(\s*[:=]\s*)['"]?[\d,.]*\d['"]?/gi,
    '$1$2[redacted]',
  ],
];

/** A provider's message with the operator's identifiers (and, about limits, figures) taken out. */
export function scrub(text: string): string {
  let s = text.slice(0, MAX_SCAN);
  for (const [re, to] of IDENTIFIERS) s = typeof to === 'string' ? s.replace(re, to) : s.replace(re, to);
  if (ABOUT_LIMITS.test(s)) for (const [re, to] of FIGURES) s = s.replace(re, to);
  return s;
}

/**
 * A provider message made safe to show a tenant: bounded, single line, with nothing of the
 * operator's in it (keys, organization / project / account ids, account-wide limit figures).
 */
export function safeMessage(value: unknown, fallback: string): string {
  if (typeof value !== 'string' || value.trim() === '') return fallback;
  const s = scrub(value.replace(/\s+/g, ' ').trim()).trim();
  if (s === '') return fallback;
  return s.length > MAX_MESSAGE ? `${s.slice(0, MAX_MESSAGE)}…` : s;
}

/** The caller sent something this provider cannot do: a 400 naming the parameter. */
export function invalidParam(param: string, message: string): GatewayError {
  return new GatewayError({ code: 'invalid_request_error', message, param, retryable: false });
}

/** An embeddings answer that is not what the protocol promises (retryable: a glitch, not the caller). */
export const malformedEmbeddings = (what: string): GatewayError =>
  new GatewayError({
    code: 'upstream_error',
    message: `provider sent a malformed embeddings answer: ${what}`,
    retryable: true,
  });

/** The stream body ended without the provider's terminal marker: never a success. */
export function streamIncomplete(): GatewayError {
  return new GatewayError({
    code: 'upstream_error',
    message: 'stream ended before completion',
    retryable: true,
  });
}

export function invalidStreamJson(): GatewayError {
  return new GatewayError({
    code: 'upstream_error',
    message: 'provider sent invalid JSON in its stream',
    retryable: true,
  });
}

export function lineTooLong(max: number): GatewayError {
  return new GatewayError({
    code: 'upstream_error',
    message: `provider stream line or event exceeded ${max} characters`,
    retryable: true,
  });
}

/**
 * A 2xx answer whose body could not be read whole: the connection broke or was reset after the
 * provider's status line (it was reached, and it answered). Retryable: the next call may answer whole.
 */
export function answerCutOff(status: number): GatewayError {
  return new GatewayError({
    code: 'upstream_error',
    message: `provider answered (HTTP ${status}) but its answer was cut off before it was complete`,
    upstreamStatus: status,
    retryable: true,
  });
}

/**
 * A failure while reading a 2xx answer (invalid JSON, too large, a stream that ended early) names
 * the status the provider answered with, as every other failed call does; one that already carries
 * a status (an in-band error, classified by its kind) keeps it.
 */
export function withAnswerStatus(e: GatewayError, status: number): GatewayError {
  if (e.upstreamStatus !== undefined || e.code !== 'upstream_error') return e;
  return new GatewayError({ ...e.toJSON(), upstreamStatus: status, cause: e.cause });
}

export interface Classified {
  /** Provider's error message (unsafe; passed through safeMessage). */
  message?: unknown;
  retryAfterMs?: number;
  /** The provider said the prompt is over the context window. */
  contextLength?: boolean;
  /** A 429 that retrying cannot fix (spend cap, daily quota, no credit). */
  quota?: boolean;
  /** A 400 that is really a bad credential (Gemini API_KEY_INVALID). */
  badKey?: boolean;
  /** Anthropic 529 and friends: the provider is overloaded as a whole. */
  overloaded?: boolean;
  /** A 429's model, when the provider names it in a structured field (Gemini quotaDimensions). */
  model?: string;
  /** A 429's kind of limit from a structured field ("requests per minute", "tokens"). */
  limit?: string;
}

/** What a 429 may tell the tenant: which limit, for which model, when to retry. Never whose, nor its figures. */
interface RateLimitFacts {
  model?: string;
  limit?: string;
  retryAfterMs?: number;
  /** OpenAI's "Request too large for <model> … on tokens per min": the request alone is over the limit. */
  tooLarge: boolean;
}

const PERIOD: Record<string, string> = { min: 'minute', minute: 'minute', hour: 'hour', day: 'day' };
const MODEL_TOKEN = '`?([A-Za-z0-9][\\w.:/@-]{0,99})`?';
const MODEL_IN_TEXT = [
  // OpenAI: "Rate limit reached for gpt-4o-mini in organization …", "Request too large for gpt-4o in …"
  new RegExp(`\\bfor (?:model )?${MODEL_TOKEN} in (?:organi[sz]ation|project)\\b`, 'i'),
  // Google: "…, limit: 10, model: gemini-2.0-flash"
  new RegExp(`\\bmodel\\s*[:=]\\s*['"]?${MODEL_TOKEN}`, 'i'),
];
const LIMIT_IN_TEXT =
  /\b((?:input |output )?(?:requests|tokens|images|connections))\s+per\s+(min|minute|hour|day)\b/i;
const RETRY_IN_TEXT = /\b(?:try again|retry) in\s+(\d+(?:\.\d+)?(?:ms|s|m|h)(?:[\d.]+(?:ms|s|m))*)/i;

function rateLimitFacts(c: Classified): RateLimitFacts {
  const text = typeof c.message === 'string' ? c.message.slice(0, MAX_SCAN) : '';
  // A name that is not clean (an id the scrubber would take out) is not named at all.
  const clean = (raw: string | undefined) => {
    const v = raw?.replace(/[.:,;]+$/, '');
    return v && scrub(v) === v ? v : undefined;
  };
  let model = clean(c.model);
  for (const re of MODEL_IN_TEXT) model ??= clean(re.exec(text)?.[1]);
  const l = LIMIT_IN_TEXT.exec(text);
  const limit = l ? `${l[1]!.toLowerCase()} per ${PERIOD[l[2]!.toLowerCase()]}` : clean(c.limit);
  const said = RETRY_IN_TEXT.exec(text)?.[1];
  return {
    model,
    limit,
    retryAfterMs: c.retryAfterMs ?? parseGoDuration(said),
    tooLarge: /\brequest too large\b/i.test(text),
  };
}

/** 7s, 3m, 5h: a wait as a person reads it. */
function wait(ms: number): string {
  const s = Math.max(1, Math.ceil(ms / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7_200) return `${Math.round(s / 60)}m`;
  return `${Math.round(s / 3_600)}h`;
}

/**
 * A 429 in the gateway's words: the provider's own text names the operator's organization or
 * project and its account-wide limit and usage, none of which is the tenant's to read.
 */
function rateLimitMessage(f: RateLimitFacts, quota: boolean): string {
  const on = f.limit ? ` (${f.limit})` : '';
  const of = f.model ? ` for ${f.model}` : '';
  if (quota) {
    const resets = f.retryAfterMs !== undefined ? `; it resets in about ${wait(f.retryAfterMs)}` : '';
    return `provider quota exhausted${on}${of}: retrying will not help until it is renewed${resets}`;
  }
  if (f.tooLarge) {
    return `request too large for the provider's rate limit${on}${of}: reduce the input or the maximum output tokens`;
  }
  const retry = f.retryAfterMs !== undefined ? `retry in ${wait(f.retryAfterMs)}` : 'retry later';
  return `provider's rate limit${on}${of} was reached; ${retry}`;
}

/**
 * The one status → code policy every adapter shares (providers.md §0.3). Adapters only extract
 * the facts (`Classified`) from their own error bodies.
 */
const CREDIT_TOO_LOW = /credit balance is too low/i;

export function classifyStatus(status: number, c: Classified): GatewayError {
  // 0: the provider was not reached, so it gave no status (the route names the code instead).
  const base = { upstreamStatus: status === 0 ? undefined : status, retryAfterMs: c.retryAfterMs };
  const msg = (fallback: string) => safeMessage(c.message, fallback);
  if (status === 0) {
    return new GatewayError({
      ...base,
      code: 'upstream_error',
      message: msg('provider unreachable'),
      retryable: true,
    });
  }
  if (status === 401 || status === 403 || c.badKey) {
    // Never echo the provider's text here: it can quote the key.
    return new GatewayError({
      ...base,
      code: 'upstream_auth_error',
      message: `provider rejected the gateway's credentials (HTTP ${status})`,
      retryable: false,
    });
  }
  if (c.overloaded || status === 503 || status === 529) {
    return new GatewayError({
      ...base,
      code: 'overloaded',
      message: msg('provider overloaded'),
      retryable: true,
    });
  }
  if (status === 429) {
    const f = rateLimitFacts(c);
    // A request over the limit by itself ("Request too large … on tokens per min") fails however
    // long it waits: not retried, no pause of the pool (the limit is not reached: other requests fit),
    // no wait to tell the caller; another provider may take it (a fallback), as after a spent quota.
    return new GatewayError({
      ...base,
      ...(f.tooLarge ? { retryAfterMs: undefined } : {}),
      code: 'rate_limit_exceeded',
      message: rateLimitMessage(f, c.quota === true),
      retryable: !c.quota && !f.tooLarge,
    });
  }
  // Anthropic says its account is out of credit with a 400 (`invalid_request_error`, "Your credit
  // balance is too low…"): the operator's billing, not the caller's request. A provider refusal, as 402.
  if (status === 402 || (status === 400 && typeof c.message === 'string' && CREDIT_TOO_LOW.test(c.message))) {
    return new GatewayError({
      ...base,
      code: 'provider_unavailable',
      message: 'provider refused the call for billing reasons',
      retryable: false,
    });
  }
  if (c.contextLength) {
    return new GatewayError({
      ...base,
      code: 'context_length_exceeded',
      message: msg('prompt exceeds the model context window'),
      param: 'messages',
      retryable: false,
    });
  }
  if (status === 404) {
    return new GatewayError({
      ...base,
      code: 'model_not_found',
      message: msg('model not found at provider'),
    });
  }
  if (status === 413) {
    return new GatewayError({
      ...base,
      code: 'payload_too_large',
      message: msg('request too large for provider'),
    });
  }
  if (status === 408 || status === 504) {
    return new GatewayError({
      ...base,
      code: 'upstream_timeout',
      message: msg('provider timed out'),
      retryable: true,
    });
  }
  if (status === 409 || status >= 500) {
    return new GatewayError({
      ...base,
      code: 'upstream_error',
      message: msg('provider error'),
      retryable: true,
    });
  }
  return new GatewayError({
    ...base,
    code: 'invalid_request_error',
    message: msg(`provider rejected the request (HTTP ${status})`),
    retryable: false,
  });
}

/**
 * An error that arrived inside a 200 stream, classified by the provider's error type string.
 * Generation restarts elsewhere are safe (nothing was billed), so server-side kinds are retryable.
 */
export function classifyInBand(kind: string | undefined, message: unknown): GatewayError {
  const k = (kind ?? '').toLowerCase();
  if (k.includes('overloaded') || k === 'unavailable' || k === '503' || k === '529') {
    return classifyStatus(503, { message });
  }
  if (
    k.includes('rate_limit') ||
    k === 'resource_exhausted' ||
    k === 'tokens' ||
    k === 'requests' ||
    k === '429'
  ) {
    return classifyStatus(429, { message });
  }
  if (k.includes('context_length')) return classifyStatus(400, { message, contextLength: true });
  if (k.includes('invalid_request') || k === 'invalid_argument' || k === 'badrequesterror' || k === '400') {
    return classifyStatus(400, { message });
  }
  if (k.includes('timeout') || k === 'deadline_exceeded') return classifyStatus(504, { message });
  return classifyStatus(500, { message });
}
