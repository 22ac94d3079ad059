-- Wallets over HTTP: a supply meter's target and minimum balance, auto top-up
-- and regular payments. The customer living there (the account's occupier)
-- changes them within the limits (api.set_wallet); the ESCO also chooses the
-- payment method.

CREATE VIEW api.wallets WITH (security_invoker = true) AS
SELECT id, esco, account_id, meter_id, target_balance, minimum_balance, auto_top_up, payment_timing, regular_amount,
       payment_day, payment_method_id, created_at, updated_at
FROM billing.wallets;
COMMENT ON VIEW api.wallets IS
    'Per supply account and meter: target_balance and minimum_balance (auto_top_up: below the minimum, one payment '
    'for the difference to the target), regular payments (payment_timing monthly | weekly, regular_amount, '
    'payment_day), payment_method_id. Change with rpc/set_wallet.';


CREATE FUNCTION api.set_wallet(account_id uuid, target_balance numeric DEFAULT NULL,
                               minimum_balance numeric DEFAULT NULL, auto_top_up boolean DEFAULT NULL,
                               payment_timing text DEFAULT NULL, regular_amount numeric DEFAULT NULL,
                               payment_day integer DEFAULT NULL, payment_method_id uuid DEFAULT NULL)
RETURNS SETOF api.wallets
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    account billing.accounts;
    wallet billing.wallets;
    problem text;
    customer uuid := flows.current_customer_id();
    timing text;
BEGIN
    SELECT * INTO account FROM billing.accounts AS a WHERE a.id = set_wallet.account_id;
    -- a customer sets the wallet of the home they live in (they occupy its account now)
    IF account.id IS NULL OR (customer IS NOT NULL AND NOT EXISTS (
            SELECT FROM billing.customer_accounts AS ca
            WHERE ca.account_id = account.id AND ca.customer_id = customer AND ca.role = 'occupier'
              AND ca.start_time <= pg_catalog.now() AND (ca.end_time IS NULL OR ca.end_time > pg_catalog.now()))) THEN
        RAISE EXCEPTION 'account_id names no account of yours (%)', coalesce(set_wallet.account_id::text, 'null')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    problem := coalesce(billing.topup_problem(account),
                        CASE WHEN account.type <> 'supply' THEN 'a wallet is for a supply account' END);
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION 'account_id cannot have a wallet: %', problem USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF customer IS NOT NULL AND set_wallet.payment_method_id IS NOT NULL THEN
        RAISE EXCEPTION 'payment_method_id is chosen by the ESCO' USING ERRCODE = 'insufficient_privilege',
            HINT = 'save a new card or mandate in the portal';
    END IF;
    -- made with its defaults the first time (preferences below); customers may not write payment_method_id
    INSERT INTO billing.wallets (esco, account_id, meter_id) VALUES (account.esco, account.id, account.meter_id)
    ON CONFLICT ON CONSTRAINT wallets_esco_account_key DO NOTHING;
    SELECT * INTO wallet FROM billing.wallets AS w WHERE w.account_id = account.id FOR UPDATE;
    wallet.minimum_balance := coalesce(set_wallet.minimum_balance, wallet.minimum_balance);
    wallet.target_balance := coalesce(set_wallet.target_balance, wallet.target_balance);
    wallet.auto_top_up := coalesce(set_wallet.auto_top_up, wallet.auto_top_up);
    timing := coalesce(set_wallet.payment_timing, wallet.payment_timing, 'none');
    IF timing NOT IN ('monthly', 'weekly', 'none') THEN
        RAISE EXCEPTION 'payment_timing must be monthly, weekly or none, got %', timing
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    wallet.payment_timing := nullif(timing, 'none');
    wallet.regular_amount := CASE WHEN timing <> 'none' THEN coalesce(set_wallet.regular_amount, wallet.regular_amount) END;
    wallet.payment_day := CASE WHEN timing <> 'none' THEN coalesce(set_wallet.payment_day, wallet.payment_day) END;
    PERFORM billing.check_amount('minimum_balance', wallet.minimum_balance, 0, 100);
    PERFORM billing.check_amount('target_balance', wallet.target_balance, wallet.minimum_balance + 5, 250);
    IF timing <> 'none' THEN
        PERFORM billing.check_amount('regular_amount', wallet.regular_amount, 5, 500);
        IF wallet.payment_day IS NULL OR wallet.payment_day NOT BETWEEN 1 AND (CASE timing WHEN 'weekly' THEN 7 ELSE 28 END) THEN
            RAISE EXCEPTION 'payment_day must be % for % payments, got %',
                CASE timing WHEN 'weekly' THEN '1 (Monday) to 7 (Sunday)' ELSE '1 to 28' END, timing,
                coalesce(wallet.payment_day::text, 'nothing')
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END IF;
    IF set_wallet.payment_method_id IS NOT NULL AND NOT EXISTS (
            SELECT FROM billing.payment_methods AS m
            WHERE m.id = set_wallet.payment_method_id AND m.status = 'active'
              AND m.customer_id = billing.payer_at(account.id, pg_catalog.now())) THEN
        RAISE EXCEPTION 'payment_method_id names no active payment method of the account''s payer'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE billing.wallets AS w
    SET target_balance = wallet.target_balance, minimum_balance = wallet.minimum_balance,
        auto_top_up = wallet.auto_top_up, payment_timing = wallet.payment_timing,
        regular_amount = wallet.regular_amount, payment_day = wallet.payment_day
    WHERE w.id = wallet.id;
    IF set_wallet.payment_method_id IS NOT NULL THEN
        UPDATE billing.wallets AS w SET payment_method_id = set_wallet.payment_method_id WHERE w.id = wallet.id;
    END IF;
    RETURN QUERY SELECT * FROM api.wallets AS w WHERE w.id = wallet.id;
END
$$;
COMMENT ON FUNCTION api.set_wallet(uuid, numeric, numeric, boolean, text, numeric, integer, uuid) IS
    'Creates or changes the wallet of a supply account; arguments left out keep their value. Limits: '
    'minimum_balance 0-100, target_balance minimum + 5 to 250, regular_amount 5-500 GBP; payment_timing monthly '
    '(payment_day 1-28), weekly (1 Monday .. 7 Sunday) or none. The occupier may change their own (not the '
    'payment method).';
