import { type Usage, zeroUsage } from '@faregate/contracts/chat';
import { GatewayError } from '@faregate/contracts/errors';
import { parseFrame } from '@faregate/contracts/frames';
import type { JobData } from '@faregate/contracts/jobs';
import { INTERRUPTED, type RouteStep } from '@faregate/contracts/route';
import { callUsageEvent, type UsageEvent } from '@faregate/contracts/usage';
import type { WorkerDeps } from './deps.ts';
import { embeddingsUsage } from './embeddings.ts';
import { countedCall, recordFailedStep } from './hold-calls.ts';
import { partialUsage, type Streamed } from './limits/estimate.ts';

/**
 * A job whose content is final (an SSE caller's: `contentFinal`) and whose attempt died mid-stream
 * (its worker was killed) comes back as a re-run that finds content in its log. The caller has that
 * content and cannot take it back, so the re-run makes no call: it ends the job with this error, as
 * a provider failure after content ends it (outcome.ts).
 */
export function cutOffError(model?: string): GatewayError {
  return new GatewayError({
    code: 'upstream_error',
    message: `The answer${model ? ` from ${model}` : ''} was cut off: the process streaming it stopped; the partial answer above is incomplete.`,
    retryable: false,
  });
}

/** The route step of a call cut short when the process making it stopped (`interrupted`). */
export function interruptedStep(e: Pick<UsageEvent, 'provider' | 'model'>): RouteStep {
  return { provider: e.provider, model: e.model, status: null, code: INTERRUPTED };
}

/** The hop and attempt of an attempt's owner (`…:<hop>:<attempt>`), or undefined. */
export function ownerCall(owner: string): { hop: number; attempt: number } | undefined {
  const parts = owner.split(':');
  const hop = Number(parts.at(-2));
  const attempt = Number(parts.at(-1));
  return Number.isInteger(hop) && Number.isInteger(attempt) ? { hop, attempt } : undefined;
}

/**
 * The usage event of the call of the attempt that died (`owner`: `<worker>:<hop>:<attempt>`, or
 * `lane:<hop>:<attempt>` for a fast-lane run that left no frame, `line:0:1` for a batch line's first
 * start), which never wrote one: estimated from the prompt (the call was made: the provider read it)
 * and the content that attempt streamed (the deltas after its own `running` frame), under that
 * attempt's own event id. Should the attempt still be alive somewhere (a stalled worker, fenced
 * since) and report its call, its own usage replaces the estimate (billing): the call is billed once.
 * `final`: it is the request's last event (it releases the admission hold).
 */
export async function cutOffCallEvent(
  deps: WorkerDeps,
  data: JobData,
  owner: string,
  final: boolean,
): Promise<UsageEvent | undefined> {
  return (await cutOffCall(deps, data, owner, final))?.event;
}

/** The call of the attempt that died: its estimated usage event, and that usage. */
async function cutOffCall(
  deps: WorkerDeps,
  data: JobData,
  owner: string,
  final: boolean,
): Promise<{ event: UsageEvent; usage: Usage; hop: number; attempt: number } | undefined> {
  const dead = ownerCall(owner);
  const candidate = dead && data.plan[dead.hop];
  if (!dead || !candidate) return undefined;
  const call = { job: data, ...dead, provider: candidate.provider, model: candidate.model };
  // An embeddings call is one whole answer: the provider read the inputs, counted as billing counts them.
  const usage =
    data.op === 'embeddings'
      ? embeddingsUsage(data.request, undefined).usage
      : partialUsage(data.request, zeroUsage(), await streamedBy(deps, data.id, dead.attempt), true).usage;
  const event = callUsageEvent(call, usage, 'failed', { final, estimated: true, at: Date.now() });
  return { event, usage, ...dead };
}

/**
 * Bills the call of the attempt that died (see `cutOffCallEvent`); the re-run's own final event
 * releases the hold. The call joins the request's route (`interrupted`), before the re-run's own,
 * so that what the caller is told lists every call billed.
 */
export async function billCutOffCall(
  deps: WorkerDeps,
  data: JobData,
  owner: string,
  ttlMs: number,
): Promise<void> {
  const dead = await cutOffCall(deps, data, owner, false);
  if (!dead) return;
  const { event, usage } = dead;
  // Counted against the hold with its usage event, as any call that produced tokens: the cost the
  // re-run reports (`usage.cost`: every call billed) and the calls the hold still covers include it.
  const counted =
    usage.inputTokens + usage.outputTokens > 0
      ? countedCall(
          data,
          {
            description: `${event.provider}/${event.model} (hop ${dead.hop}, attempt ${dead.attempt}): ${INTERRUPTED} (the process making the call stopped)`,
            costMicros: deps.prices.callCostMicros(event.provider, event.model, usage, event.at) ?? 0n,
          },
          ttlMs,
        )
      : undefined;
  // Unfenced: a usage event only (this attempt owns the job; the one that died does not).
  await deps.store.append(data.id, [], {
    owner: '',
    ttlMs,
    usage: event,
    ...(counted ? { call: counted } : {}),
  });
  // A Redis failure here leaves the route without it rather than failing the re-run.
  await recordFailedStep(deps, data, interruptedStep(event), ttlMs).catch(() => {});
}

/** The content attempt `attempt` streamed: the deltas after its own `running` frame (its first token's). */
async function streamedBy(deps: WorkerDeps, jobId: string, attempt: number): Promise<Streamed> {
  const streamed: Streamed = { text: '', reasoning: '' };
  let mine = false;
  for (let after = 0; ; ) {
    const page = await deps.store.read(jobId, after, 500);
    for (const raw of page) {
      after++;
      // Frames come from another process: read through the schema (one that does not parse is skipped).
      const f = parseFrame(raw);
      if (!f) continue;
      after = f.seq;
      // The dead attempt's content follows its own `running` frame (written with its first token).
      if (f.type === 'reset') mine = false;
      if (f.type === 'status' && f.state === 'running') {
        mine = f.attempt === attempt;
        if (mine) Object.assign(streamed, { text: '', reasoning: '' });
      }
      if (f.type !== 'delta' || !mine) continue;
      streamed.text += `${f.text ?? ''}${f.refusal ?? ''}`;
      for (const c of f.tool_calls ?? [])
        streamed.text += (c.function?.name ?? '') + (c.function?.arguments ?? '');
      streamed.reasoning += f.reasoning ?? '';
    }
    if (page.length < 500) break;
  }
  return streamed;
}
