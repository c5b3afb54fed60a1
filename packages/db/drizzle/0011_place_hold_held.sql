-- A refusal says whether holds are what make the balance (or the key's spend limit) short:
-- 'insufficient_balance_held' / 'key_limit_held' when the balance alone covers the amount. Decided
-- under the account's lock with the refusal itself, so a caller that waits on held work (a batch
-- line) need not re-read the holds afterwards (a hold settled in between read as no hold, and the
-- line failed 402 when it would have run). Otherwise the same function as 0002.
CREATE OR REPLACE FUNCTION sy_place_hold(
  p_request_id text,
  p_account_id text,
  p_key_id text,
  p_amount bigint,
  p_expires_at timestamptz
) RETURNS text
LANGUAGE plpgsql
VOLATILE
AS $$
DECLARE
  v_balance bigint;
  v_held bigint;
  v_limit bigint;
  v_spent bigint;
  v_key_held bigint;
BEGIN
  -- A hold is a reservation, not a movement of money: commit it without waiting for the WAL flush
  -- (~0.5 ms p50, several ms p99 on the request path). A Postgres crash can lose the last fraction
  -- of a second of holds; those requests still settle in full, and settlement stays synchronous.
  PERFORM set_config('synchronous_commit', 'off', true);
  SELECT balance_micros INTO v_balance
    FROM ledger_accounts WHERE id = 'tenant:' || p_account_id FOR UPDATE;
  IF NOT FOUND THEN
    RETURN 'insufficient_balance';
  END IF;
  -- The same request asking twice (an ingress retry) is admitted once.
  IF EXISTS (SELECT 1 FROM holds WHERE request_id = p_request_id AND expires_at > now()) THEN
    RETURN 'ok';
  END IF;
  SELECT coalesce(sum(amount_micros), 0) INTO v_held
    FROM holds WHERE account_id = p_account_id AND expires_at > now();
  IF v_balance - v_held < p_amount THEN
    -- Short only because of what other work holds (it settles at its cost, usually far below its
    -- worst case): a caller that can wait (a batch line) waits; the balance alone, it cannot.
    RETURN CASE WHEN v_balance >= p_amount THEN 'insufficient_balance_held' ELSE 'insufficient_balance' END;
  END IF;
  -- A key belongs to one account, so the account lock above also serializes this key's holds.
  SELECT spend_limit_micros, spent_micros INTO v_limit, v_spent FROM api_keys WHERE id = p_key_id;
  IF v_limit IS NOT NULL THEN
    SELECT coalesce(sum(amount_micros), 0) INTO v_key_held
      FROM holds WHERE key_id = p_key_id AND expires_at > now();
    IF v_spent + v_key_held + p_amount > v_limit THEN
      RETURN CASE WHEN v_spent + p_amount <= v_limit THEN 'key_limit_held' ELSE 'key_limit' END;
    END IF;
  END IF;
  INSERT INTO holds (request_id, account_id, key_id, amount_micros, expires_at)
    VALUES (p_request_id, p_account_id, p_key_id, p_amount, p_expires_at)
    ON CONFLICT (request_id) DO UPDATE
      SET account_id = excluded.account_id, key_id = excluded.key_id,
          amount_micros = excluded.amount_micros, expires_at = excluded.expires_at, created_at = now();
  RETURN 'ok';
END;
$$;
