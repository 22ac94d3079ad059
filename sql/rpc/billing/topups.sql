-- Top-ups and gifts over HTTP: what was (or is being) put on the meters and
-- why a top-up waits; operators retry, cancel, adjust and give.

CREATE VIEW api.topups WITH (security_invoker = true) AS
SELECT id, esco, account_id, meter_id, customer_id, amount, source, payment_id, gift_id, solar_credit_id, status, token,
       acquired_at, used_at, reference, notes, command_id, rounds, transaction_count, balance_before, balance_after,
       waiting_for, waiting_since, waiting_reason, last_error, requested_by, created_at, updated_at
FROM billing.topups;
COMMENT ON VIEW api.topups IS
    'Credit put on prepay meters: source payment, gift, solar_credit or adjustment; status wait_token_fetch -> '
    'wait_token_push -> completed | failed_token_fetch | failed_token_push | cancelled; waiting_reason says why '
    'it waits (e.g. the meter is offline); command_id the meter command of its current round. A customer sees '
    'their own.';
COMMENT ON COLUMN api.topups.transaction_count IS 'The meter''s token transaction count after this credit.';

CREATE VIEW api.gifts WITH (security_invoker = true) AS
SELECT id, esco, account_id, amount, reason, scheduled_at, status, given_at, cancelled_at, cancel_reason,
       requested_by, created_at, updated_at
FROM billing.gifts;
COMMENT ON VIEW api.gifts IS
    'Credit given to an account from scheduled_at: scheduled -> given (a top-up) | cancelled (never pays).';


-- A top-up of the caller's, locked; 22023 naming the field when there is none.
CREATE FUNCTION billing.topup_for_update(p_topup uuid) RETURNS billing.topups
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    topup billing.topups;
BEGIN
    SELECT * INTO topup FROM billing.topups AS t WHERE t.id = p_topup FOR UPDATE;
    IF topup.id IS NULL THEN
        RAISE EXCEPTION 'topup_id names no top-up (%)', coalesce(p_topup::text, 'null')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN topup;
END
$$;

-- The account a new top-up goes to, if it can take one now, else 22023 naming the field.
CREATE FUNCTION billing.topup_account(p_account uuid) RETURNS billing.accounts
LANGUAGE plpgsql STABLE
SET search_path = ''
AS $$
DECLARE
    account billing.accounts;
    problem text;
BEGIN
    SELECT * INTO account FROM billing.accounts AS a WHERE a.id = p_account;
    problem := billing.topup_problem(account);
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION 'account_id cannot take a top-up: %', CASE WHEN account.id IS NULL
                        THEN pg_catalog.format('no account %s', coalesce(p_account::text, 'null')) ELSE problem END
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN account;
END
$$;


CREATE FUNCTION api.retry_topup(topup_id uuid) RETURNS SETOF api.topups
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    topup billing.topups := billing.topup_for_update(retry_topup.topup_id);
BEGIN
    IF topup.status IN ('failed_token_fetch', 'failed_token_push') THEN
        -- a token the meter refused is replaced; any other is sent again (the meter never takes one twice)
        PERFORM billing.start_topup_round(topup.id, topup.status = 'failed_token_fetch'
                                                    OR billing.token_failure_kind(topup.last_error) = 'refused');
    ELSIF topup.waiting_for IS NOT NULL THEN
        PERFORM billing.start_topup_round(topup.id, false);
    ELSE
        RAISE EXCEPTION 'top-up % is % and not waiting: only a failed or waiting top-up can be retried', topup.id,
            topup.status USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY SELECT * FROM api.topups AS t WHERE t.id = topup.id;
END
$$;
COMMENT ON FUNCTION api.retry_topup(uuid) IS
    'Sends a failed or waiting top-up to its meter again now (a new round: the same token unless the meter '
    'refused it).';


CREATE FUNCTION api.cancel_topup(topup_id uuid, reason text) RETURNS SETOF api.topups
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    topup billing.topups := billing.topup_for_update(cancel_topup.topup_id);
    command flows.meter_commands;
BEGIN
    IF cancel_topup.reason IS NULL OR btrim(cancel_topup.reason) = '' THEN
        RAISE EXCEPTION 'reason: say why the top-up is cancelled' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF topup.status IN ('completed', 'cancelled') THEN
        RAISE EXCEPTION 'top-up % is %: only a waiting or failed top-up can be cancelled', topup.id, topup.status
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO command FROM flows.meter_commands AS c WHERE c.id = topup.command_id FOR UPDATE;
    IF command.status = 'running' THEN
        RAISE EXCEPTION 'top-up % is being sent to its meter now', topup.id
            USING ERRCODE = 'invalid_parameter_value', HINT = 'try again when this attempt has ended';
    ELSIF command.progress ? 'pushed_at' AND billing.token_failure_kind(topup.last_error) <> 'refused' THEN
        RAISE EXCEPTION 'top-up % may be on its meter already (its token was pushed at %, with no answer)', topup.id,
            command.progress ->> 'pushed_at'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'retry it (the meter says whether it took the token), then cancel it if it did not';
    END IF;
    PERFORM billing.cancel_topup(topup.id, pg_catalog.format('%s (by %s)', cancel_topup.reason, flows.requester()));
    RETURN QUERY SELECT * FROM api.topups AS t WHERE t.id = topup.id;
END
$$;
COMMENT ON FUNCTION api.cancel_topup(uuid, text) IS
    'Cancels a waiting or failed top-up (and its pending command). A gift, solar credit or adjustment is '
    'reversed in the ledger; a payment''s money stays the account''s credit (refund it, or bill against it).';


CREATE FUNCTION api.create_adjustment_topup(account_id uuid, amount numeric, reason text) RETURNS SETOF api.topups
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    account billing.accounts;
    made uuid;
BEGIN
    IF create_adjustment_topup.reason IS NULL OR btrim(create_adjustment_topup.reason) = '' THEN
        RAISE EXCEPTION 'reason: an adjustment needs one' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF create_adjustment_topup.amount IS NULL OR create_adjustment_topup.amount = 0
       OR abs(create_adjustment_topup.amount) > 1000
       OR create_adjustment_topup.amount <> round(create_adjustment_topup.amount, 2) THEN
        RAISE EXCEPTION 'amount must be between -1000 and 1000 GBP, not 0, in whole pence; got %',
            coalesce(create_adjustment_topup.amount::text, 'nothing')
            USING ERRCODE = 'invalid_parameter_value', HINT = 'negative: a deduction in the books only';
    END IF;
    account := billing.topup_account(create_adjustment_topup.account_id);
    made := billing.create_topup(account.esco, account.id, account.meter_id, create_adjustment_topup.amount,
                                 'adjustment', billing.payer_at(account.id, pg_catalog.now()),
                                 p_notes => create_adjustment_topup.reason);
    RETURN QUERY SELECT * FROM api.topups AS t WHERE t.id = made;
END
$$;
COMMENT ON FUNCTION api.create_adjustment_topup(uuid, numeric, text) IS
    'Credit added to an account''s prepay meter by the ESCO, with a reason (-1000 to 1000 GBP; a negative '
    'adjustment is a deduction in the books: meters take no negative tokens).';


CREATE FUNCTION api.create_gift(account_id uuid, amount numeric, reason text, scheduled_at timestamptz DEFAULT NULL)
RETURNS SETOF api.gifts
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    account billing.accounts;
    due timestamptz := coalesce(create_gift.scheduled_at, pg_catalog.now());
    made uuid;
BEGIN
    PERFORM billing.check_amount('amount', create_gift.amount, 0.01, 1000);
    IF create_gift.reason IS NULL OR btrim(create_gift.reason) = '' THEN
        RAISE EXCEPTION 'reason: a gift needs one (e.g. sign-up bonus)' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF due < pg_catalog.now() - interval '1 minute' OR due > pg_catalog.now() + interval '1 year' THEN
        RAISE EXCEPTION 'scheduled_at must be from now to a year ahead (a gift is never given in the past), got %', due
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    account := billing.topup_account(create_gift.account_id);
    INSERT INTO billing.gifts (esco, account_id, amount, reason, scheduled_at, requested_by)
    VALUES (account.esco, account.id, create_gift.amount, create_gift.reason, due, flows.requester())
    RETURNING id INTO made;
    IF due <= pg_catalog.now() THEN
        PERFORM billing.give_gift(made);
    END IF;
    RETURN QUERY SELECT * FROM api.gifts AS g WHERE g.id = made;
END
$$;
COMMENT ON FUNCTION api.create_gift(uuid, numeric, text, timestamptz) IS
    'Gives an account credit (0.01-1000 GBP) with a reason, now or at scheduled_at: then it becomes a top-up.';


CREATE FUNCTION api.cancel_gift(gift_id uuid, reason text) RETURNS SETOF api.gifts
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    gift billing.gifts;
BEGIN
    IF cancel_gift.reason IS NULL OR btrim(cancel_gift.reason) = '' THEN
        RAISE EXCEPTION 'reason: say why the gift is cancelled' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO gift FROM billing.gifts AS g WHERE g.id = cancel_gift.gift_id FOR UPDATE;
    IF gift.id IS NULL THEN
        RAISE EXCEPTION 'gift_id names no gift (%)', cancel_gift.gift_id USING ERRCODE = 'invalid_parameter_value';
    ELSIF gift.status <> 'scheduled' THEN
        RAISE EXCEPTION 'gift % is %: only a scheduled gift can be cancelled', gift.id, gift.status
            USING ERRCODE = 'invalid_parameter_value', HINT = 'a given gift is a top-up: cancel the top-up instead';
    END IF;
    UPDATE billing.gifts AS g
    SET status = 'cancelled', cancelled_at = pg_catalog.now(),
        cancel_reason = pg_catalog.format('%s (by %s)', cancel_gift.reason, flows.requester())
    WHERE g.id = gift.id;
    RETURN QUERY SELECT * FROM api.gifts AS g WHERE g.id = gift.id;
END
$$;
COMMENT ON FUNCTION api.cancel_gift(uuid, text) IS 'Cancels a scheduled gift: it never pays.';
