-- The money pass: what the payments job (flows.payments.job) runs every few
-- seconds, one pass at a time across all workers (advisory lock money_pass),
-- each step set-based or over the few rows that are due:
--
-- 1. gifts that are due become top-ups;
-- 2. waiting top-ups whose reason to wait is gone start their next round: the
--    meter answered again (a sync), a retry's backoff passed, the meter was
--    made active;
-- 3. regular payments (wallets paid monthly or weekly) are created up to
--    p_horizon ahead, so customers can be told the day before; those a changed
--    wallet no longer wants are cancelled while not yet submitted;
-- 4. auto top-ups: a wallet whose prepay meter's balance is below its minimum
--    gets one payment for the difference to its target (never a second while
--    one is open or its top-up is not credited yet, never over a failed one
--    of the last day, and only on a balance read after the last one landed).

-- The times a wallet's regular payments fall due from p_from to p_to: 09:00 UK
-- time on its payment day (of the month, or ISO day of the week).
CREATE FUNCTION billing.regular_payment_times(p_wallet billing.wallets, p_from timestamptz, p_to timestamptz)
RETURNS SETOF timestamptz
LANGUAGE sql STABLE
SET search_path = ''
AS $$
    SELECT (d::date + time '09:00') AT TIME ZONE 'Europe/London'
    FROM generate_series(flows.uk_day(p_from)::timestamp, flows.uk_day(p_to)::timestamp, interval '1 day') AS d
    WHERE CASE p_wallet.payment_timing WHEN 'monthly' THEN extract(day FROM d) = p_wallet.payment_day
                                       WHEN 'weekly' THEN extract(isodow FROM d) = p_wallet.payment_day END
      AND (d::date + time '09:00') AT TIME ZONE 'Europe/London' > p_from
      AND (d::date + time '09:00') AT TIME ZONE 'Europe/London' <= p_to
$$;

-- Whether a wallet's account may be paid for now: open supply account on an
-- active prepay meter, someone paying it, with an active payment method.
CREATE FUNCTION billing.wallet_payer(p_wallet billing.wallets) RETURNS TABLE (customer_id uuid, payment_method_id uuid)
LANGUAGE sql STABLE
SET search_path = ''
AS $$
    SELECT payer.id, coalesce(
               (SELECT m.id FROM billing.payment_methods AS m
                WHERE m.id = p_wallet.payment_method_id AND m.status = 'active' AND m.customer_id = payer.id),
               billing.default_payment_method(payer.id))
    FROM billing.accounts AS a
    CROSS JOIN LATERAL (SELECT billing.payer_at(a.id, pg_catalog.now()) AS id) AS payer
    WHERE a.id = p_wallet.account_id AND a.type = 'supply' AND billing.topup_problem(a) IS NULL AND payer.id IS NOT NULL
$$;

CREATE FUNCTION billing.run_money_pass_v1(p_retry_base interval DEFAULT '30 seconds',
                                          p_horizon interval DEFAULT '7 days')
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    gifts integer := 0;
    resumed integer := 0;
    scheduled integer := 0;
    withdrawn integer := 0;
    auto integer := 0;
    due uuid;
BEGIN
    IF NOT pg_catalog.pg_try_advisory_xact_lock(flows.lock_key('money_pass'), 0) THEN
        RETURN pg_catalog.jsonb_build_object('skipped', 'another pass is running');
    END IF;

    FOR due IN SELECT g.id FROM billing.gifts AS g WHERE g.status = 'scheduled' AND g.scheduled_at <= pg_catalog.now()
               ORDER BY g.scheduled_at FOR UPDATE SKIP LOCKED LOOP
        PERFORM billing.give_gift(due);
        gifts := gifts + 1;
    END LOOP;

    FOR due IN SELECT t.id FROM billing.topups AS t
               JOIN flows.meter_registry AS m ON m.id = t.meter_id
               LEFT JOIN flows.meter_shadows AS s ON s.id = t.meter_id
               WHERE t.waiting_for IS NOT NULL
                 AND ((t.waiting_for = 'meter' AND s.last_healthy_at > t.waiting_since)
                      OR (t.waiting_for = 'retry'
                          AND pg_catalog.now() >= t.waiting_since
                                                  + least(interval '1 hour',
                                                          p_retry_base * power(2, least(t.rounds, 10) - 1)))
                      OR (t.waiting_for = 'active_meter' AND m.mode = 'active'))
               ORDER BY t.waiting_since FOR UPDATE OF t SKIP LOCKED LOOP
        PERFORM billing.start_topup_round(due, false);
        resumed := resumed + 1;
    END LOOP;

    -- Regular payments a wallet no longer wants (its timing, day or amount changed, or none): cancelled.
    UPDATE billing.payments AS p
    SET status = 'cancelled', failure_reason = 'the wallet''s regular payments changed'
    FROM billing.wallets AS w
    WHERE w.id = p.wallet_id AND p.origin = 'scheduled' AND p.status = 'pending' AND p.submitted_at IS NULL
      AND (w.payment_timing IS NULL OR p.amount <> w.regular_amount
           OR p.scheduled_at NOT IN (SELECT billing.regular_payment_times(w, p.scheduled_at - interval '1 minute',
                                                                         p.scheduled_at)));
    GET DIAGNOSTICS withdrawn = ROW_COUNT;

    INSERT INTO billing.payments (esco, account_id, customer_id, amount, provider, origin, wallet_id, payment_method_id,
                                  scheduled_at, description, requested_by)
    SELECT w.esco, w.account_id, payer.customer_id, w.regular_amount, 'stripe', 'scheduled', w.id,
           payer.payment_method_id, due_at,
           pg_catalog.format('%s payment', w.payment_timing), 'scheduler'
    FROM billing.wallets AS w
    CROSS JOIN LATERAL billing.wallet_payer(w) AS payer
    CROSS JOIN LATERAL billing.regular_payment_times(w, pg_catalog.now(), pg_catalog.now() + p_horizon) AS due_at
    WHERE w.payment_timing IS NOT NULL AND payer.payment_method_id IS NOT NULL
    ON CONFLICT (wallet_id, scheduled_at) WHERE origin = 'scheduled' AND status <> 'cancelled' DO NOTHING;
    GET DIAGNOSTICS scheduled = ROW_COUNT;

    INSERT INTO billing.payments (esco, account_id, customer_id, amount, provider, origin, wallet_id, payment_method_id,
                                  description, requested_by)
    SELECT w.esco, w.account_id, payer.customer_id,
           least(500, greatest(0.01, billing.round_half_up(w.target_balance - s.balance, 2))), 'stripe', 'auto_top_up',
           w.id, payer.payment_method_id,
           pg_catalog.format('auto top-up: balance %s below %s', billing.round_half_up(s.balance, 2), w.minimum_balance),
           'scheduler'
    FROM billing.wallets AS w
    JOIN flows.meter_shadows AS s ON s.id = w.meter_id
    CROSS JOIN LATERAL billing.wallet_payer(w) AS payer
    WHERE w.auto_top_up AND s.balance < w.minimum_balance AND payer.payment_method_id IS NOT NULL
      AND NOT EXISTS (  -- an auto top-up still on its way, or one that failed in the last day
          SELECT FROM billing.payments AS p
          LEFT JOIN billing.topups AS t ON t.payment_id = p.id
          WHERE p.wallet_id = w.id AND p.origin = 'auto_top_up'
            AND (p.status IN ('pending', 'created', 'processing')
                 OR (p.status = 'succeeded' AND t.id IS NOT NULL AND t.status <> 'completed')
                 OR (p.status = 'failed' AND p.updated_at > pg_catalog.now() - interval '1 day')
                 OR (t.used_at IS NOT NULL AND s.balance_updated_at <= t.used_at)))
    ON CONFLICT (wallet_id) WHERE origin = 'auto_top_up' AND status IN ('pending', 'created', 'processing') DO NOTHING;
    GET DIAGNOSTICS auto = ROW_COUNT;

    RETURN pg_catalog.jsonb_build_object('gifts', gifts, 'topups_resumed', resumed, 'scheduled_payments', scheduled,
                                         'scheduled_withdrawn', withdrawn, 'auto_top_ups', auto);
END
$$;
COMMENT ON FUNCTION billing.run_money_pass_v1(interval, interval) IS
    'One money pass: due gifts, waiting top-ups resumed, regular payments created ahead, auto top-ups. '
    'Returns what it did.';
