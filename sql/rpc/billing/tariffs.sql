-- Customer tariffs over HTTP: the price cap, each ESCO's quarter, each
-- customer's rates; generating next quarter's rates from a new cap, rolling
-- them out to the meters, and the meters whose tariff is not what it should be.

CREATE VIEW api.benchmark_tariffs WITH (security_invoker = true) AS
SELECT region, period_start, unit_rate, standing_charge, created_at
FROM billing.benchmark_tariffs;
COMMENT ON VIEW api.benchmark_tariffs IS
    'The price cap per Ofgem region and quarter (period_start): unit_rate GBP/kWh, standing_charge GBP/day, incl. VAT.';

CREATE VIEW api.microgrid_tariffs WITH (security_invoker = true) AS
SELECT m.id, m.esco, m.period_start, m.region, m.discount,
       (SELECT billing.discounted_rate(b.unit_rate, m.discount) FROM billing.benchmark_tariffs AS b
        WHERE b.region = m.region AND b.period_start = m.period_start) AS unit_rate,
       (SELECT billing.discounted_rate(b.standing_charge, m.discount) FROM billing.benchmark_tariffs AS b
        WHERE b.region = m.region AND b.period_start = m.period_start) AS standing_charge,
       m.emergency_credit, m.ecredit_availability, m.debt_recovery_rate, m.created_at
FROM billing.microgrid_tariffs AS m;
ALTER VIEW api.microgrid_tariffs ALTER COLUMN esco SET DEFAULT flows.current_esco_id();
COMMENT ON VIEW api.microgrid_tariffs IS
    'An ESCO''s quarter: its region''s cap, the default discount (percent), the microgrid rates it gives, and '
    'the meters'' prepayment settings (GBP).';

CREATE VIEW api.customer_tariffs WITH (security_invoker = true) AS
SELECT id, esco, customer_id, microgrid_tariff_id, period_start, effective_from, effective_to, discount, unit_rate,
       standing_charge, created_at
FROM billing.customer_tariffs;
COMMENT ON VIEW api.customer_tariffs IS
    'A customer''s rates (GBP incl. VAT) from effective_from to effective_to: the cap x (1 - discount/100), '
    'half-up to 5 decimals. Made by rpc/generate_customer_tariffs, changed by rpc/set_customer_discount.';


CREATE FUNCTION billing.esco_by_code(p_code text) RETURNS uuid
LANGUAGE plpgsql STABLE
SET search_path = ''
AS $$
DECLARE
    found uuid;
BEGIN
    SELECT e.id INTO found FROM flows.escos AS e WHERE e.code = p_code;
    IF found IS NULL THEN
        RAISE EXCEPTION 'no ESCO %', pg_catalog.quote_literal(p_code)
            USING ERRCODE = 'invalid_parameter_value', HINT = 'esco_code is the ESCO''s code, e.g. DEMO';
    END IF;
    RETURN found;
END
$$;

CREATE FUNCTION billing.check_quarter_start(p_period_start date) RETURNS date
LANGUAGE plpgsql IMMUTABLE
SET search_path = ''
AS $$
BEGIN
    IF p_period_start IS NULL OR p_period_start <> billing.quarter_start(p_period_start) THEN
        RAISE EXCEPTION 'period_start must be the first day of a quarter (1 January, April, July or October), got %',
            p_period_start USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN p_period_start;
END
$$;


CREATE FUNCTION api.generate_customer_tariffs(esco_code text, period_start date, discount numeric DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    esco_id uuid := billing.esco_by_code(esco_code);
    quarter date := billing.check_quarter_start(period_start);
    previous billing.microgrid_tariffs;
    microgrid billing.microgrid_tariffs;
    made integer;
BEGIN
    IF discount IS NOT NULL AND (discount < 0 OR discount > 100) THEN
        RAISE EXCEPTION 'discount must be a percentage between 0 and 100, got %', discount
            USING ERRCODE = 'invalid_parameter_value', HINT = '25 means 25% off the price cap';
    END IF;
    SELECT * INTO microgrid FROM billing.microgrid_tariffs AS m WHERE m.esco = esco_id AND m.period_start = quarter;
    IF microgrid.id IS NULL THEN
        SELECT * INTO previous FROM billing.microgrid_tariffs AS m
        WHERE m.esco = esco_id AND m.period_start < quarter ORDER BY m.period_start DESC LIMIT 1;
        IF previous.id IS NULL THEN
            RAISE EXCEPTION 'ESCO % has no microgrid tariff to carry over into %', esco_code, quarter
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'create its first quarter in microgrid_tariffs (region, discount, prepayment settings)';
        END IF;
        IF NOT EXISTS (SELECT FROM billing.benchmark_tariffs AS b
                       WHERE b.region = previous.region AND b.period_start = quarter) THEN
            RAISE EXCEPTION 'no price cap for region % from %', previous.region, quarter
                USING ERRCODE = 'invalid_parameter_value', HINT = 'add it to benchmark_tariffs first';
        END IF;
        INSERT INTO billing.microgrid_tariffs (esco, period_start, region, discount, emergency_credit,
                                               ecredit_availability, debt_recovery_rate)
        VALUES (esco_id, quarter, previous.region, coalesce(discount, previous.discount), previous.emergency_credit,
                previous.ecredit_availability, previous.debt_recovery_rate)
        RETURNING * INTO microgrid;
    END IF;
    -- Every live (or onboarding) customer paying for an open supply account
    -- gets the quarter's rates; a customer's discount carries over from their
    -- last tariff, else the ESCO's.
    WITH payers AS (
        SELECT DISTINCT c.id AS customer_id
        FROM billing.customers AS c
        JOIN billing.customer_accounts AS ca ON ca.customer_id = c.id
        JOIN billing.accounts AS a ON a.id = ca.account_id
        WHERE c.esco = esco_id AND c.status IN ('onboarding', 'live', 'exiting') AND a.status = 'open'
          AND a.type IN ('supply', 'ev')
          AND tstzrange(ca.start_time, ca.end_time)
              && tstzrange(flows.uk_day_start(quarter), flows.uk_day_start((quarter + interval '3 months')::date))
    ),
    added AS (
        INSERT INTO billing.customer_tariffs (esco, customer_id, microgrid_tariff_id, period_start, effective_from,
                                              effective_to, discount, unit_rate, standing_charge)
        SELECT esco_id, p.customer_id, microgrid.id, quarter, flows.uk_day_start(quarter),
               flows.uk_day_start((quarter + interval '3 months')::date),
               coalesce((SELECT t.discount FROM billing.customer_tariffs AS t
                         WHERE t.customer_id = p.customer_id AND t.effective_from < flows.uk_day_start(quarter)
                         ORDER BY t.effective_from DESC LIMIT 1), microgrid.discount),
               0, 0  -- derived from the cap by billing.derive_customer_rates
        FROM payers AS p
        WHERE NOT EXISTS (SELECT FROM billing.customer_tariffs AS t
                          WHERE t.customer_id = p.customer_id AND t.period_start = quarter)
        RETURNING 1
    )
    SELECT count(*) INTO made FROM added;
    RETURN pg_catalog.jsonb_build_object(
        'microgrid_tariff', (SELECT pg_catalog.to_jsonb(m) FROM api.microgrid_tariffs AS m WHERE m.id = microgrid.id),
        'customer_tariffs_added', made,
        'customer_tariffs', (SELECT count(*) FROM billing.customer_tariffs AS t
                             WHERE t.esco = esco_id AND t.period_start = quarter));
END
$$;
COMMENT ON FUNCTION api.generate_customer_tariffs(text, date, numeric) IS
    'Next quarter''s customer tariffs from its price cap (benchmark_tariffs): creates the ESCO''s quarter '
    '(carrying the region, discount and prepayment settings over; discount overrides), and gives every live '
    'customer of an open account rates = cap x (1 - their discount carried over). Running it again adds only '
    'what is missing.';


CREATE FUNCTION api.set_customer_discount(customer_id uuid, discount numeric, effective_from timestamptz)
RETURNS SETOF api.customer_tariffs
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    current billing.customer_tariffs;
    added uuid;
    at timestamptz := billing.check_move_time('effective_from', effective_from);
BEGIN
    IF discount IS NULL OR discount < 0 OR discount > 100 THEN
        RAISE EXCEPTION 'discount must be a percentage between 0 and 100, got %', discount
            USING ERRCODE = 'invalid_parameter_value', HINT = '25 means 25% off the price cap';
    END IF;
    SELECT * INTO current FROM billing.customer_tariffs AS t
    WHERE t.customer_id = set_customer_discount.customer_id AND t.effective_from <= at AND t.effective_to > at
    FOR UPDATE;
    IF current.id IS NULL THEN
        RAISE EXCEPTION 'customer % has no tariff in force at %', set_customer_discount.customer_id, at
            USING ERRCODE = 'invalid_parameter_value', HINT = 'generate the quarter''s tariffs first';
    END IF;
    IF EXISTS (SELECT FROM billing.invoices AS i
               WHERE i.customer_id = current.customer_id AND i.status <> 'draft' AND i.period_to > at) THEN
        RAISE EXCEPTION 'customer % has a final statement after %', current.customer_id, at
            USING ERRCODE = 'invalid_parameter_value', HINT = 'a discount cannot change what was billed; credit it first';
    END IF;
    IF current.effective_from = at THEN
        UPDATE billing.customer_tariffs AS t SET discount = set_customer_discount.discount WHERE t.id = current.id;
        RETURN QUERY SELECT * FROM api.customer_tariffs AS t WHERE t.id = current.id;
        RETURN;
    END IF;
    UPDATE billing.customer_tariffs AS t SET effective_to = at WHERE t.id = current.id;
    INSERT INTO billing.customer_tariffs (esco, customer_id, microgrid_tariff_id, period_start, effective_from,
                                          effective_to, discount, unit_rate, standing_charge)
    VALUES (current.esco, current.customer_id, current.microgrid_tariff_id, current.period_start, at,
            current.effective_to, set_customer_discount.discount, 0, 0)
    RETURNING id INTO added;
    RETURN QUERY SELECT * FROM api.customer_tariffs AS t WHERE t.id = added;
END
$$;
COMMENT ON FUNCTION api.set_customer_discount(uuid, numeric, timestamptz) IS
    'Changes a customer''s discount (percent) from effective_from (a half hour) to the end of that tariff: '
    'the tariff in force is split there, so statements split at that half hour.';


-- Meter tariff JSON (DOMAIN.md keys) for a customer tariff.
CREATE FUNCTION billing.meter_tariff(t billing.customer_tariffs, m billing.microgrid_tariffs, activation timestamptz)
RETURNS jsonb
LANGUAGE sql STABLE
AS $$
    SELECT pg_catalog.jsonb_build_object(
        'standing_charge', t.standing_charge::text, 'unit_rate_element_a', t.unit_rate::text,
        'unit_rate_element_b', t.unit_rate::text,
        'prepayment_emergency_credit', m.emergency_credit::text,
        'prepayment_ecredit_availability', m.ecredit_availability::text,
        'prepayment_debt_recovery_rate', m.debt_recovery_rate::text,
        'activation_datetime', pg_catalog.to_char(activation AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'))
$$;


CREATE FUNCTION api.roll_out_customer_tariffs(esco_code text, period_start date) RETURNS jsonb
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    esco_id uuid := billing.esco_by_code(esco_code);
    quarter date := billing.check_quarter_start(period_start);
    batch uuid := gen_random_uuid();
    -- a quarter already begun: its tariff activates in a minute
    activation timestamptz := greatest(flows.uk_day_start(quarter), pg_catalog.now() + interval '1 minute');
    sent integer;
BEGIN
    IF flows.uk_day_start((quarter + interval '3 months')::date) <= pg_catalog.now() THEN
        RAISE EXCEPTION 'quarter % is over', quarter USING ERRCODE = 'invalid_parameter_value';
    END IF;
    WITH wanted AS (  -- the tariff each supply account's payer has at activation
        SELECT DISTINCT ON (a.meter_id) a.meter_id, billing.meter_tariff(t, m, activation) AS tariff
        FROM billing.accounts AS a
        JOIN billing.payer_periods AS p ON p.account_id = a.id AND p.period @> activation
        JOIN billing.customer_tariffs AS t
          ON t.customer_id = p.customer_id AND t.period_start = quarter
         AND tstzrange(t.effective_from, t.effective_to) @> activation
        JOIN billing.microgrid_tariffs AS m ON m.id = t.microgrid_tariff_id
        JOIN flows.meters_to_command(NULL, p_prepay => true) AS c ON c.meter_id = a.meter_id
        WHERE a.esco = esco_id AND a.status = 'open' AND a.type = 'supply'
        ORDER BY a.meter_id
    ),
    added AS (
        INSERT INTO flows.meter_commands (esco, meter_id, kind, parameters, batch_id, requested_by)
        SELECT esco_id, w.meter_id, 'set_future_tariff', pg_catalog.jsonb_build_object('tariff', w.tariff), batch,
               flows.requester()
        FROM wanted AS w
        WHERE flows.tariff_is_valid(w.tariff, true)
        RETURNING 1
    )
    SELECT count(*) INTO sent FROM added;
    RETURN pg_catalog.jsonb_build_object('rollout_id', CASE WHEN sent > 0 THEN batch END, 'meters', sent,
                                         'activation_datetime', activation);
END
$$;
COMMENT ON FUNCTION api.roll_out_customer_tariffs(text, date) IS
    'Writes each supply meter''s customer tariff for the quarter to the meter as its future tariff (activating '
    'at the quarter''s start, or in a minute if it has begun), as one rollout: follow it in tariff_rollouts.';


CREATE VIEW api.meters_with_incorrect_tariffs WITH (security_invoker = true) AS
WITH expected AS (
    SELECT a.esco, a.id AS account_id, a.account_number, a.meter_id, p.customer_id, t.id AS customer_tariff_id,
           t.unit_rate, t.standing_charge, 'active' AS tariff
    FROM billing.accounts AS a
    JOIN billing.payer_periods AS p ON p.account_id = a.id AND p.period @> now()
    JOIN billing.customer_tariffs AS t ON t.customer_id = p.customer_id
     AND tstzrange(t.effective_from, t.effective_to) @> now()
    WHERE a.status = 'open' AND a.type = 'supply'
    UNION ALL  -- the next tariff, due within the quarter to come, should be on the meter as its future tariff
    SELECT a.esco, a.id, a.account_number, a.meter_id, p.customer_id, n.id, n.unit_rate, n.standing_charge, 'future'
    FROM billing.accounts AS a
    JOIN billing.payer_periods AS p ON p.account_id = a.id AND p.period @> now()
    CROSS JOIN LATERAL (SELECT t.* FROM billing.customer_tariffs AS t
                        WHERE t.customer_id = p.customer_id AND t.effective_from > now()
                          AND t.effective_from < now() + interval '3 months'
                        ORDER BY t.effective_from LIMIT 1) AS n
    WHERE a.status = 'open' AND a.type = 'supply'
)
SELECT e.esco, e.meter_id, m.serial, e.account_id, e.account_number, e.customer_id, e.tariff,
       e.customer_tariff_id, e.unit_rate AS expected_unit_rate, e.standing_charge AS expected_standing_charge,
       (x.tariff ->> 'unit_rate_element_a')::numeric AS meter_unit_rate_a,
       (x.tariff ->> 'unit_rate_element_b')::numeric AS meter_unit_rate_b,
       (x.tariff ->> 'standing_charge')::numeric AS meter_standing_charge,
       s.tariffs_updated_at
FROM expected AS e
JOIN flows.meter_registry AS m ON m.id = e.meter_id
JOIN flows.meter_shadows AS s ON s.id = e.meter_id
CROSS JOIN LATERAL (SELECT CASE e.tariff WHEN 'active' THEN s.tariffs_active ELSE s.tariffs_future END AS tariff) AS x
WHERE m.prepay_enabled AND NOT flows.is_three_phase(m)
  AND ((x.tariff ->> 'unit_rate_element_a')::numeric IS DISTINCT FROM e.unit_rate
       OR coalesce((x.tariff ->> 'unit_rate_element_b')::numeric, e.unit_rate) <> e.unit_rate
       OR (x.tariff ->> 'standing_charge')::numeric IS DISTINCT FROM e.standing_charge);
COMMENT ON VIEW api.meters_with_incorrect_tariffs IS
    'Prepay meters whose tariff (active, or future for the next customer tariff) differs from what their '
    'payer''s customer tariff says; tariff = which one. Roll the quarter out again to fix them.';
