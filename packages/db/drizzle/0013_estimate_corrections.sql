ALTER TABLE "usage_events" ADD COLUMN "estimated" boolean DEFAULT false NOT NULL;--> statement-breakpoint
ALTER TABLE "usage_events" ADD COLUMN "estimated_cost_micros" bigint;--> statement-breakpoint
ALTER TABLE "usage_events" ADD COLUMN "correction_transaction_id" text;--> statement-breakpoint
-- sy_settle (0010) with each event's `estimated` flag: an estimate settled for a call (it died or
-- froze mid-call and the request's next run billed it) is replaced by the call's own usage if that
-- comes later, through a `correction` journal transaction.
CREATE OR REPLACE FUNCTION sy_settle(
  p_tx text,
  p_ids text[], p_accounts text[], p_keys text[], p_requests text[], p_providers text[],
  p_models text[], p_hops int[], p_attempts int[], p_input int[], p_cached int[],
  p_cache_write int[], p_output int[], p_reasoning int[], p_costs bigint[], p_unpriced bool[],
  p_outcomes text[], p_finals bool[], p_at timestamptz[],
  -- The budget lease that admitted each event's request (NULL: the request has a hold of its own),
  -- and the request's share of it.
  p_hold_ids text[], p_hold_micros bigint[],
  -- Of each event's cache writes, those with a 1-hour TTL (migration 0010).
  p_cache_write_1h int[],
  -- Each event's tokens are the gateway's estimate (migration 0013).
  p_estimated bool[]
) RETURNS text[]
LANGUAGE plpgsql
VOLATILE
AS $$
DECLARE
  v_ledgers text[];
  v_new text[];
  v_costed int;
  v_empty text[];
  b_accounts text[];
  b_keys text[];
  b_requests text[];
  b_providers text[];
  b_costs bigint[];
  b_finals bool[];
  b_hold_ids text[];
  b_hold_micros bigint[];
  v_fix text;
  v_fixed int;
BEGIN
  -- Ledger accounts the batch may touch: created on first use, then locked in id order (every
  -- multi-account writer locks in this order, so writers never deadlock with each other).
  SELECT array_agg(DISTINCT l ORDER BY l) INTO v_ledgers
    FROM (SELECT 'tenant:' || a AS l FROM unnest(p_accounts) a
          UNION SELECT 'provider:' || p FROM unnest(p_providers) p) s;
  INSERT INTO ledger_accounts (id, kind, account_id)
    SELECT l, CASE WHEN l LIKE 'tenant:%' THEN 'tenant' ELSE 'provider' END,
           CASE WHEN l LIKE 'tenant:%' THEN substr(l, 8) END
      FROM unnest(v_ledgers) l
    ON CONFLICT (id) DO NOTHING;
  PERFORM 1 FROM ledger_accounts WHERE id = ANY (v_ledgers) ORDER BY id FOR UPDATE;

  -- The events under their unique ids: a duplicate is a no-op.
  WITH ins AS (
    INSERT INTO usage_events (id, account_id, key_id, request_id, provider, model, hop, attempt,
      input_tokens, cached_input_tokens, cache_write_tokens, cache_write_1h_tokens, output_tokens,
      reasoning_tokens, cost_micros, unpriced, outcome, final, occurred_at, transaction_id, estimated)
    SELECT e.id, e.account, e.key, e.request, e.provider, e.model, e.hop, e.attempt, e.input,
           e.cached, e.cache_write, coalesce(e.cache_write_1h, 0), e.output, e.reasoning, e.cost,
           e.unpriced, e.outcome, e.final, e.at, CASE WHEN e.cost > 0 THEN p_tx END,
           coalesce(e.estimated, false)
      FROM unnest(p_ids, p_accounts, p_keys, p_requests, p_providers, p_models, p_hops, p_attempts,
                  p_input, p_cached, p_cache_write, p_cache_write_1h, p_output, p_reasoning, p_costs,
                  p_unpriced, p_outcomes, p_finals, p_at, p_estimated)
        AS e(id, account, key, request, provider, model, hop, attempt, input, cached, cache_write,
             cache_write_1h, output, reasoning, cost, unpriced, outcome, final, at, estimated)
    ON CONFLICT (id) DO NOTHING
    RETURNING id
  )
  SELECT coalesce(array_agg(id), '{}') INTO v_new FROM ins;

  -- A call's own usage for a call settled from the gateway's estimate (it died or froze mid-call,
  -- and the request's next run billed it; then its worker came back with the provider's count):
  -- the row takes the call's tokens and cost, keeps the cost first posted (`estimated_cost_micros`)
  -- and one journal transaction of kind `correction` posts the differences (either sign). Once
  -- replaced, a row is final: later events of the call are duplicates like any other.
  v_fix := p_tx || '-c';
  WITH fixed AS (
    UPDATE usage_events u
       SET input_tokens = e.input, cached_input_tokens = e.cached, cache_write_tokens = e.cache_write,
           cache_write_1h_tokens = coalesce(e.cache_write_1h, 0), output_tokens = e.output,
           reasoning_tokens = e.reasoning, cost_micros = e.cost, unpriced = e.unpriced,
           estimated = false, estimated_cost_micros = u.cost_micros,
           correction_transaction_id = CASE WHEN e.cost <> u.cost_micros THEN v_fix END
      FROM unnest(p_ids, p_accounts, p_providers, p_input, p_cached, p_cache_write, p_cache_write_1h,
                  p_output, p_reasoning, p_costs, p_unpriced, p_estimated)
        AS e(id, account, provider, input, cached, cache_write, cache_write_1h, output, reasoning, cost,
             unpriced, estimated)
     -- (The same call: the same tenant and provider, whose ledger accounts are locked above.)
     WHERE u.id = e.id AND u.account_id = e.account AND u.provider = e.provider
       AND u.estimated AND NOT coalesce(e.estimated, false) AND NOT (u.id = ANY (v_new))
    RETURNING u.account_id, u.key_id, u.provider, u.cost_micros - u.estimated_cost_micros AS delta
  ), d AS (
    SELECT * FROM fixed WHERE delta <> 0
  ), legs AS (
    SELECT 'tenant:' || account_id AS l, -sum(delta) AS amount FROM d GROUP BY account_id
    UNION ALL
    SELECT 'provider:' || provider, sum(delta) FROM d GROUP BY provider
  ), tx AS (
    INSERT INTO journal_transactions (id, kind, reference)
      SELECT v_fix, 'correction', 'usage: ' || count(*) || ' estimate(s) replaced by the call''s usage'
        FROM d HAVING count(*) > 0
    RETURNING id
  ), entries AS (
    INSERT INTO journal_entries (transaction_id, ledger_account_id, amount_micros)
      SELECT tx.id, legs.l, legs.amount FROM legs, tx WHERE legs.amount <> 0
  ), balances AS (
    UPDATE ledger_accounts a SET balance_micros = a.balance_micros + legs.amount, updated_at = now()
      FROM legs WHERE a.id = legs.l AND legs.amount <> 0
  ), spend AS (
    UPDATE api_keys k SET spent_micros = k.spent_micros + s.delta
      FROM (SELECT key_id, sum(delta) AS delta FROM d GROUP BY key_id) s
     WHERE k.id = s.key_id
  )
  SELECT count(*) INTO v_fixed FROM fixed;

  IF cardinality(v_new) = 0 THEN
    RETURN v_new;
  END IF;

  -- The events inserted now, with what settling needs of each (parallel arrays again).
  SELECT array_agg(e.account), array_agg(e.key), array_agg(e.request), array_agg(e.provider),
         array_agg(e.cost), array_agg(e.final), array_agg(e.hold_id), array_agg(e.hold_micros),
         count(*) FILTER (WHERE e.cost > 0)
    INTO b_accounts, b_keys, b_requests, b_providers, b_costs, b_finals, b_hold_ids, b_hold_micros,
         v_costed
    FROM unnest(p_ids, p_accounts, p_keys, p_requests, p_providers, p_costs, p_finals, p_hold_ids,
                p_hold_micros)
      AS e(id, account, key, request, provider, cost, final, hold_id, hold_micros)
    JOIN unnest(v_new) AS n(id) ON n.id = e.id;

  -- One journal transaction moves the new events' cost from their tenants to `provider:<name>`:
  -- one leg per ledger account (each the sum of its events' costs), the balances, each key's spend.
  IF v_costed > 0 THEN
    INSERT INTO journal_transactions (id, kind, reference)
      VALUES (p_tx, 'settlement', 'usage: ' || v_costed || ' event(s)');
    WITH b AS (SELECT * FROM unnest(b_accounts, b_providers, b_costs) AS b(account, provider, cost)
                WHERE cost > 0),
    legs AS (
      SELECT 'tenant:' || account AS l, -sum(cost) AS amount FROM b GROUP BY account
      UNION ALL
      SELECT 'provider:' || provider, sum(cost) FROM b GROUP BY provider
    ), entries AS (
      INSERT INTO journal_entries (transaction_id, ledger_account_id, amount_micros)
        SELECT p_tx, l, amount FROM legs
    )
    UPDATE ledger_accounts a SET balance_micros = a.balance_micros + legs.amount, updated_at = now()
      FROM legs WHERE a.id = legs.l;
    UPDATE api_keys k SET spent_micros = k.spent_micros + d.delta
      FROM (SELECT key, sum(cost) AS delta FROM unnest(b_keys, b_costs) AS b(key, cost)
             WHERE cost > 0 GROUP BY key) d
     WHERE k.id = d.key;
  END IF;

  -- Holds. A request with its own hold row: its final event releases it; earlier (retried,
  -- fallen-back) calls shrink it by what they cost, so money is never reserved twice for the same
  -- tokens. A request admitted under a budget lease: its final event gives its share of the lease
  -- back, and a lease row with nothing left is dropped.
  DELETE FROM holds WHERE request_id IN (
    SELECT request FROM unnest(b_requests, b_finals, b_hold_ids) AS b(request, final, hold_id)
     WHERE final AND hold_id IS NULL);
  WITH b AS (
    SELECT * FROM unnest(b_requests, b_costs, b_finals, b_hold_ids, b_hold_micros)
      AS b(request, cost, final, hold_id, hold_micros)
  ), shrink AS (
    SELECT hold_id AS id, hold_micros AS amount FROM b WHERE final AND hold_id IS NOT NULL
    UNION ALL
    -- (A request admitted under a lease has no row of its own: shrinking it is a no-op.)
    SELECT request, cost FROM b
     WHERE cost > 0 AND request NOT IN (SELECT request FROM b WHERE final)
  ), total AS (
    SELECT id, sum(amount) AS amount FROM shrink GROUP BY id
  ), shrunk AS (
    UPDATE holds h SET amount_micros = greatest(h.amount_micros - total.amount, 0)
      FROM total WHERE h.request_id = total.id
    RETURNING h.request_id, h.amount_micros
  )
  SELECT coalesce(array_agg(request_id), '{}') INTO v_empty FROM shrunk WHERE amount_micros <= 0;
  IF cardinality(v_empty) > 0 THEN
    DELETE FROM holds WHERE request_id = ANY (v_empty) AND amount_micros <= 0;
  END IF;
  RETURN v_new;
END;
$$;
--> statement-breakpoint
-- The 0010 signature, for a billing process still running the code before this migration during a
-- rolling upgrade: its events are not flagged, so it never replaces an estimate.
CREATE OR REPLACE FUNCTION sy_settle(
  p_tx text,
  p_ids text[], p_accounts text[], p_keys text[], p_requests text[], p_providers text[],
  p_models text[], p_hops int[], p_attempts int[], p_input int[], p_cached int[],
  p_cache_write int[], p_output int[], p_reasoning int[], p_costs bigint[], p_unpriced bool[],
  p_outcomes text[], p_finals bool[], p_at timestamptz[],
  p_hold_ids text[], p_hold_micros bigint[], p_cache_write_1h int[]
) RETURNS text[]
LANGUAGE sql
VOLATILE
AS $$
  SELECT sy_settle(p_tx, p_ids, p_accounts, p_keys, p_requests, p_providers, p_models, p_hops,
    p_attempts, p_input, p_cached, p_cache_write, p_output, p_reasoning, p_costs, p_unpriced,
    p_outcomes, p_finals, p_at, p_hold_ids, p_hold_micros, p_cache_write_1h,
    array_fill(false, ARRAY[cardinality(p_ids)]));
$$;
