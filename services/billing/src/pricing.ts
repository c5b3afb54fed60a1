import type { UsageEvent } from '@faregate/contracts/usage';
import { eventCostMicros } from './cost.ts';
import type { PricedEvent } from './ledger.ts';
import type { PriceBook } from './price-book.ts';

/**
 * Billing policy: the tenant pays, at cost, for every provider call that produced tokens —
 * retries and fallbacks included, each at its own provider/model's price at the time of the call
 * (`event.at`). No markup, no subscription. A model with no known price is recorded with cost 0
 * and `unpriced = true` (and counted): the ingress refuses unpriced models unless configured to
 * allow them, so this is an operator's choice, never a silent loss. Self-hosted models (llama) are
 * priced 0 by the catalog unless configured otherwise.
 */
export async function priceEvents(book: PriceBook, events: UsageEvent[]): Promise<PricedEvent[]> {
  await book.refreshIfMissing(events);
  return events.map((event) => {
    const price = book.lookup(event.provider, event.model, event.at);
    if (!price) return { event, costMicros: 0n, unpriced: true };
    return { event, costMicros: eventCostMicros(event, price), unpriced: false };
  });
}
