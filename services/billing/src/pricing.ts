import type { UsageEvent } from '@faregate/contracts/usage';
import { eventCostMicros } from './cost.ts';
import type { PricedEvent } from './ledger.ts';
import type { PriceBook } from './price-book.ts';

const hasTokens = (e: UsageEvent) =>
  e.inputTokens + e.outputTokens + e.cachedInputTokens + e.cacheWriteTokens > 0;

/**
 * Billing policy: the tenant pays, at cost, for every provider call that produced tokens —
 * retries and fallbacks included, each at its own provider/model's price at the time of the call
 * (`event.at`), resolved by the catalog's one price resolution (the served id may be dated, tagged or
 * an alias of the listed one). No markup, no subscription. Self-hosted models are priced 0 on purpose
 * unless configured otherwise. A model with no price at all is recorded with cost 0 and
 * `unpriced = true`, counted (billing_usage_unpriced_total) and reported: the ingress refuses
 * unpriced models unless ALLOW_UNPRICED_MODELS, so anything else is a bug to see, never a silent loss.
 */
export async function priceEvents(book: PriceBook, events: UsageEvent[]): Promise<PricedEvent[]> {
  await book.refreshIfMissing(events);
  return events.map((event) => {
    const price = book.lookup(event.provider, event.model, event.at);
    if (!price) {
      if (hasTokens(event)) book.reportUnpriced(event);
      return { event, costMicros: 0n, unpriced: true };
    }
    return { event, costMicros: eventCostMicros(event, price), unpriced: false };
  });
}
