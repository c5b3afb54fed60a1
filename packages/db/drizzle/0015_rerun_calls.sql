CREATE TABLE "rerun_calls" (
	"id" text PRIMARY KEY NOT NULL,
	"account_id" text NOT NULL,
	"key_id" text NOT NULL,
	"request_id" text NOT NULL,
	"provider" text NOT NULL,
	"model" text NOT NULL,
	"hop" integer NOT NULL,
	"attempt" integer NOT NULL,
	"input_tokens" integer NOT NULL,
	"cached_input_tokens" integer NOT NULL,
	"cache_write_tokens" integer NOT NULL,
	"cache_write_1h_tokens" integer DEFAULT 0 NOT NULL,
	"output_tokens" integer NOT NULL,
	"reasoning_tokens" integer NOT NULL,
	"cost_micros" bigint NOT NULL,
	"unpriced" boolean DEFAULT false NOT NULL,
	"outcome" text NOT NULL,
	"estimated" boolean DEFAULT false NOT NULL,
	"occurred_at" timestamp with time zone NOT NULL,
	"recorded_at" timestamp with time zone DEFAULT now() NOT NULL,
	"batch_id" text NOT NULL
);
--> statement-breakpoint
CREATE INDEX "rerun_calls_request_idx" ON "rerun_calls" USING btree ("request_id");--> statement-breakpoint
-- The settlement of 0014, under a name of its own: it settles the calls it is given. sy_settle (below)
-- decides which those are.
ALTER FUNCTION sy_settle(text, text[], text[], text[], text[], text[], text[], int[], int[], int[],
  int[], int[], int[], int[], bigint[], bool[], text[], bool[], timestamptz[], text[], bigint[], int[],
  bool[]) RENAME TO sy_settle_calls;
--> statement-breakpoint
-- A request has one final event. A final event of a request whose final event is settled already
-- under another call's id comes from a run of a request that had ended: Redis lost the writes that
-- ended it (a kill -9 with `appendfsync everysec`, a failover to a lagging replica) after billing had
-- read them, and the gateway ran the request again. The caller asked once: that call is recorded in
-- `rerun_calls` (what the gateway paid the provider), not charged, and releases no hold (the first
-- final event released it). Two final events of one request new in one batch: the earlier call's
-- stands. A final event for a call settled already (its own usage, or an estimate of it) while
-- another is the request's final: passed on as not final (its call is settled as before; it releases
-- nothing). An event of a call recorded as a re-run call: a duplicate.
CREATE FUNCTION sy_settle(
  p_tx text,
  p_ids text[], p_accounts text[], p_keys text[], p_requests text[], p_providers text[],
  p_models text[], p_hops int[], p_attempts int[], p_input int[], p_cached int[],
  p_cache_write int[], p_output int[], p_reasoning int[], p_costs bigint[], p_unpriced bool[],
  p_outcomes text[], p_finals bool[], p_at timestamptz[],
  p_hold_ids text[], p_hold_micros bigint[],
  p_cache_write_1h int[],
  p_estimated bool[]
) RETURNS text[]
LANGUAGE plpgsql
VOLATILE
AS $$
DECLARE
  v_ledgers text[];
  v_drop int[];
  v_rerun int[];
  v_unfinal int[];
BEGIN
  -- The tenants' and providers' ledger accounts, locked first in id order as sy_settle_calls locks
  -- them (it locks them again, a no-op): settlements of one tenant's events run one after another,
  -- so whether a request's final event is settled is read here, not raced.
  SELECT array_agg(DISTINCT l ORDER BY l) INTO v_ledgers
    FROM (SELECT 'tenant:' || a AS l FROM unnest(p_accounts) a
          UNION SELECT 'provider:' || p FROM unnest(p_providers) p) s;
  INSERT INTO ledger_accounts (id, kind, account_id)
    SELECT l, CASE WHEN l LIKE 'tenant:%' THEN 'tenant' ELSE 'provider' END,
           CASE WHEN l LIKE 'tenant:%' THEN substr(l, 8) END
      FROM unnest(v_ledgers) l
    ON CONFLICT (id) DO NOTHING;
  PERFORM 1 FROM ledger_accounts WHERE id = ANY (v_ledgers) ORDER BY id FOR UPDATE;

  WITH e AS (
    SELECT e.*,
           EXISTS (SELECT 1 FROM rerun_calls r WHERE r.id = e.id) AS rerun,
           (SELECT u.final FROM usage_events u WHERE u.id = e.id) AS known_final
      FROM unnest(p_ids, p_requests, p_finals, p_at) WITH ORDINALITY AS e(id, request, final, at, i)
  ), f AS (
    -- Each final event: whether the request has a final event under another id, settled or earlier
    -- in the batch (a final event settled already ranks first: it is the one that stands).
    SELECT e.*,
           EXISTS (SELECT 1 FROM usage_events u
                    WHERE u.request_id = e.request AND u.final AND u.id <> e.id) AS other_settled,
           row_number() OVER (PARTITION BY e.request
                              ORDER BY coalesce(e.known_final, false) DESC, e.at, e.id) AS nth
      FROM e WHERE e.final AND NOT e.rerun
  )
  SELECT coalesce((SELECT array_agg(i) FROM e WHERE rerun), '{}'),
         coalesce((SELECT array_agg(i) FROM f WHERE (other_settled OR nth > 1) AND known_final IS NULL), '{}'),
         coalesce((SELECT array_agg(i) FROM f WHERE (other_settled OR nth > 1) AND known_final IS NOT NULL), '{}')
    INTO v_drop, v_rerun, v_unfinal;

  IF cardinality(v_rerun) > 0 THEN
    INSERT INTO rerun_calls (id, account_id, key_id, request_id, provider, model, hop, attempt,
      input_tokens, cached_input_tokens, cache_write_tokens, cache_write_1h_tokens, output_tokens,
      reasoning_tokens, cost_micros, unpriced, outcome, estimated, occurred_at, batch_id)
    SELECT e.id, e.account, e.key, e.request, e.provider, e.model, e.hop, e.attempt, e.input,
           e.cached, e.cache_write, coalesce(e.cache_write_1h, 0), e.output, e.reasoning, e.cost,
           e.unpriced, e.outcome, coalesce(e.estimated, false), e.at, p_tx
      FROM unnest(p_ids, p_accounts, p_keys, p_requests, p_providers, p_models, p_hops, p_attempts,
                  p_input, p_cached, p_cache_write, p_cache_write_1h, p_output, p_reasoning, p_costs,
                  p_unpriced, p_outcomes, p_at, p_estimated) WITH ORDINALITY
        AS e(id, account, key, request, provider, model, hop, attempt, input, cached, cache_write,
             cache_write_1h, output, reasoning, cost, unpriced, outcome, at, estimated, i)
     WHERE e.i = ANY (v_rerun)
    ON CONFLICT (id) DO NOTHING;
  END IF;

  IF cardinality(v_drop) + cardinality(v_rerun) + cardinality(v_unfinal) = 0 THEN
    RETURN sy_settle_calls(p_tx, p_ids, p_accounts, p_keys, p_requests, p_providers, p_models, p_hops,
      p_attempts, p_input, p_cached, p_cache_write, p_output, p_reasoning, p_costs, p_unpriced,
      p_outcomes, p_finals, p_at, p_hold_ids, p_hold_micros, p_cache_write_1h, p_estimated);
  END IF;

  -- The events left, in their order; the demoted ones no longer final.
  SELECT array_agg(e.id ORDER BY e.i), array_agg(e.account ORDER BY e.i), array_agg(e.key ORDER BY e.i),
         array_agg(e.request ORDER BY e.i), array_agg(e.provider ORDER BY e.i),
         array_agg(e.model ORDER BY e.i), array_agg(e.hop ORDER BY e.i),
         array_agg(e.attempt ORDER BY e.i), array_agg(e.input ORDER BY e.i),
         array_agg(e.cached ORDER BY e.i), array_agg(e.cache_write ORDER BY e.i),
         array_agg(e.output ORDER BY e.i), array_agg(e.reasoning ORDER BY e.i),
         array_agg(e.cost ORDER BY e.i), array_agg(e.unpriced ORDER BY e.i),
         array_agg(e.outcome ORDER BY e.i),
         array_agg(e.final AND NOT (e.i = ANY (v_unfinal)) ORDER BY e.i),
         array_agg(e.at ORDER BY e.i), array_agg(e.hold_id ORDER BY e.i),
         array_agg(e.hold_micros ORDER BY e.i), array_agg(e.cache_write_1h ORDER BY e.i),
         array_agg(e.estimated ORDER BY e.i)
    INTO p_ids, p_accounts, p_keys, p_requests, p_providers, p_models, p_hops, p_attempts, p_input,
         p_cached, p_cache_write, p_output, p_reasoning, p_costs, p_unpriced, p_outcomes, p_finals,
         p_at, p_hold_ids, p_hold_micros, p_cache_write_1h, p_estimated
    FROM unnest(p_ids, p_accounts, p_keys, p_requests, p_providers, p_models, p_hops, p_attempts,
                p_input, p_cached, p_cache_write, p_output, p_reasoning, p_costs, p_unpriced,
                p_outcomes, p_finals, p_at, p_hold_ids, p_hold_micros, p_cache_write_1h, p_estimated)
      WITH ORDINALITY
      AS e(id, account, key, request, provider, model, hop, attempt, input, cached, cache_write,
           output, reasoning, cost, unpriced, outcome, final, at, hold_id, hold_micros,
           cache_write_1h, estimated, i)
   WHERE NOT (e.i = ANY (v_drop) OR e.i = ANY (v_rerun));
  IF p_ids IS NULL THEN
    RETURN '{}';
  END IF;
  RETURN sy_settle_calls(p_tx, p_ids, p_accounts, p_keys, p_requests, p_providers, p_models, p_hops,
    p_attempts, p_input, p_cached, p_cache_write, p_output, p_reasoning, p_costs, p_unpriced,
    p_outcomes, p_finals, p_at, p_hold_ids, p_hold_micros, p_cache_write_1h, p_estimated);
END;
$$;
