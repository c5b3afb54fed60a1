import { normalizeDirective } from './content.ts';
import { DEFAULT_MODELS } from './models.ts';
import { Bucket } from './rate-limit.ts';
import {
  FAKE_PROVIDERS,
  type CallRecord,
  type FakeConfig,
  type FakeProviderId,
  type Fault,
} from './types.ts';

export const DEFAULT_CONFIG: Omit<FakeConfig, 'models'> = {
  firstByteMs: 0,
  chunkMs: 0,
  tokens: 12,
  tokensPerChunk: 1,
  rpm: 0,
};

/** Advertised ceilings when no rpm is set: high enough that a gateway pacing on headers never slows down. */
const UNLIMITED_RPM = 1_000_000;
const UNLIMITED_TPM = 150_000_000;
/** The call log keeps the newest entries only, so a long benchmark cannot exhaust memory. */
const CALL_LOG_LIMIT = 100_000;

export interface Limits {
  requests: Bucket;
  tokens: Bucket;
  input: Bucket;
  output: Bucket;
}

interface ScriptedFault extends Fault {}

export type ConfigPatch = Partial<FakeConfig> & { provider?: FakeProviderId };

/** A prompt cache: a key is a hit until its TTL runs out since it was last written or read. */
export class PromptCache {
  readonly #until = new Map<string, number>();

  /** True on a hit; either way the entry now lives `ttlMs` from now. */
  hit(key: string, ttlMs: number): boolean {
    const now = Date.now();
    const hit = (this.#until.get(key) ?? 0) > now;
    this.#until.set(key, now + ttlMs);
    if (this.#until.size > 10_000) this.#until.delete(this.#until.keys().next().value as string);
    return hit;
  }
}

/** All mutable state of one fake server: settings, scripted faults, limits and the call log. */
export class FakeState {
  config = {} as Record<FakeProviderId, FakeConfig>;
  limits = {} as Record<FakeProviderId, Limits>;
  faults = {} as Record<FakeProviderId, ScriptedFault[]>;
  calls: CallRecord[] = [];
  seq = 0;
  /** Anthropic's prompt cache: prefixes by key, until they expire. */
  promptCache = new PromptCache();
  private initial: Partial<FakeConfig>;

  constructor(initial: Partial<FakeConfig> = {}) {
    if (initial.models) throw new Error('fake: models can only be configured per provider');
    this.initial = { ...initial };
    this.reset();
  }

  reset(): void {
    for (const p of FAKE_PROVIDERS) {
      this.config[p] = { ...DEFAULT_CONFIG, ...this.initial, models: [...DEFAULT_MODELS[p]] };
      this.limits[p] = makeLimits(this.config[p].rpm);
      this.faults[p] = [];
    }
    this.calls = [];
    this.seq = 0;
    this.promptCache = new PromptCache();
  }

  configure(patch: ConfigPatch): void {
    const { provider, ...rest } = patch;
    if (provider !== undefined && !FAKE_PROVIDERS.includes(provider)) {
      throw new Error(`fake: unknown provider ${JSON.stringify(provider)}`);
    }
    if (rest.models !== undefined && !provider)
      throw new Error('fake: models can only be configured per provider');
    for (const [k, v] of Object.entries(rest)) {
      if (k === 'models') {
        if (!Array.isArray(v) || v.some((m) => typeof m !== 'string' || m === '')) {
          throw new Error('fake: models must be an array of non-empty strings');
        }
      } else if (!(k in DEFAULT_CONFIG)) throw new Error(`fake: unknown setting ${k}`);
      else if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) {
        throw new Error(`fake: ${k} must be a non-negative number`);
      }
    }
    if (rest.tokensPerChunk === 0) throw new Error('fake: tokensPerChunk must be at least 1');
    for (const p of provider ? [provider] : FAKE_PROVIDERS) {
      const before = this.config[p].rpm;
      this.config[p] = { ...this.config[p], ...rest, ...(rest.models ? { models: [...rest.models] } : {}) };
      if (this.config[p].rpm !== before) this.limits[p] = makeLimits(this.config[p].rpm);
    }
  }

  script(provider: FakeProviderId, faults: Fault[], model?: string): void {
    if (!FAKE_PROVIDERS.includes(provider))
      throw new Error(`fake: unknown provider ${JSON.stringify(provider)}`);
    if (!Array.isArray(faults)) throw new Error('fake: faults must be an array');
    for (const f of faults) {
      const d = normalizeDirective(f);
      if (!d.fault) throw new Error('fake: every scripted fault needs a "fault"');
      this.faults[provider].push({ ...(d as Fault), ...(model !== undefined ? { model } : {}) });
    }
  }

  clearFaults(provider?: FakeProviderId): void {
    for (const p of provider ? [provider] : FAKE_PROVIDERS) this.faults[p] = [];
  }

  /** Takes the first scripted fault that applies to this model (requested name or served id). */
  takeFault(provider: FakeProviderId, requested: string, served: string): Fault | undefined {
    const q = this.faults[provider];
    if (q.length === 0) return undefined;
    const i = q.findIndex((f) => f.model === undefined || f.model === requested || f.model === served);
    if (i < 0) return undefined;
    return q.splice(i, 1)[0];
  }

  record(r: Omit<CallRecord, 'seq'>): CallRecord {
    const rec: CallRecord = { seq: ++this.seq, ...r };
    this.calls.push(rec);
    if (this.calls.length > 2 * CALL_LOG_LIMIT) this.calls.splice(0, this.calls.length - CALL_LOG_LIMIT);
    return rec;
  }
}

function makeLimits(rpm: number): Limits {
  const enforce = rpm > 0;
  // With an rpm set, token ceilings scale with it the way real tiers do (≈ 1k tokens per request).
  const tpm = enforce ? rpm * 1000 : UNLIMITED_TPM;
  return {
    requests: new Bucket(enforce ? rpm : UNLIMITED_RPM, enforce),
    tokens: new Bucket(tpm, false),
    input: new Bucket(tpm, false),
    output: new Bucket(Math.ceil(tpm / 5), false),
  };
}
