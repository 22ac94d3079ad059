-- Tariffs as Flows stores them (meter_shadows.tariffs_active / tariffs_future)
-- and accepts them: a JSON object of GBP amounts, with the activation time for
-- a future tariff. Keys and sanity ranges:
--   standing_charge                  0 - 2    GBP per day
--   unit_rate_element_a, _b          0 - 1    GBP per kWh
--   prepayment_ecredit_availability  0 - 500  GBP (balance at which emergency credit may be taken)
--   prepayment_debt_recovery_rate    0 - 20   GBP per day
--   prepayment_emergency_credit      0 - 500  GBP
--   activation_datetime              ISO 8601 with offset (future tariffs only)
-- Amounts are numbers or numeric strings with at most 5 decimals (the meter's
-- resolution is 0.00001 GBP).

CREATE FUNCTION flows.tariff_field_limit(field text) RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE field
    WHEN 'standing_charge' THEN 2
    WHEN 'unit_rate_element_a' THEN 1
    WHEN 'unit_rate_element_b' THEN 1
    WHEN 'prepayment_ecredit_availability' THEN 500
    WHEN 'prepayment_debt_recovery_rate' THEN 20
    WHEN 'prepayment_emergency_credit' THEN 500
END;

-- True for a valid tariff (or null); otherwise raises an error naming the field.
CREATE FUNCTION flows.tariff_is_valid(tariff jsonb, is_future boolean) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = ''
AS $$
DECLARE
    field text;
    value jsonb;
    amount numeric;
    limit_gbp numeric;
    what text := CASE WHEN is_future THEN 'future tariff' ELSE 'active tariff' END;
BEGIN
    IF tariff IS NULL OR tariff = '{}' THEN
        RETURN true;  -- no tariff
    END IF;
    IF pg_catalog.jsonb_typeof(tariff) <> 'object' THEN
        RAISE EXCEPTION '% must be a JSON object', what USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR field, value IN SELECT e.key, e.value FROM pg_catalog.jsonb_each(tariff) AS e LOOP
        IF field = 'activation_datetime' THEN
            IF NOT is_future THEN
                RAISE EXCEPTION '% field activation_datetime belongs to future tariffs only', what
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            IF pg_catalog.jsonb_typeof(value) <> 'string' OR NOT flows.is_iso_time(value #>> '{}') THEN
                RAISE EXCEPTION '% field activation_datetime must be an ISO 8601 time with offset, got %', what, value
                    USING ERRCODE = 'invalid_parameter_value', HINT = 'e.g. "2027-01-01T00:00:00Z"';
            END IF;
            CONTINUE;
        END IF;
        limit_gbp := flows.tariff_field_limit(field);
        IF limit_gbp IS NULL THEN
            RAISE EXCEPTION 'unknown % field %', what, field
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'fields: standing_charge, unit_rate_element_a, unit_rate_element_b, '
                          || 'prepayment_ecredit_availability, prepayment_debt_recovery_rate, '
                          || 'prepayment_emergency_credit, activation_datetime';
        END IF;
        IF pg_catalog.jsonb_typeof(value) NOT IN ('number', 'string')
           OR (value #>> '{}') !~ '^-?\d+(\.\d+)?$' THEN
            RAISE EXCEPTION '% field % must be a number, got %', what, field, value
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        amount := (value #>> '{}')::numeric;
        IF amount < 0 OR amount > limit_gbp THEN
            RAISE EXCEPTION '% field % must be between 0 and % GBP, got %', what, field, limit_gbp, amount
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF pg_catalog.scale(amount) > 5 THEN
            RAISE EXCEPTION '% field % has more than 5 decimal places: %', what, field, amount
                USING ERRCODE = 'invalid_parameter_value', HINT = 'meters store amounts in 0.00001 GBP';
        END IF;
    END LOOP;
    IF is_future AND NOT tariff ? 'activation_datetime' THEN
        RAISE EXCEPTION 'a future tariff needs activation_datetime' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN true;
END
$$;
COMMENT ON FUNCTION flows.tariff_is_valid(jsonb, boolean) IS
    'True for a valid tariff JSON object (or null); otherwise raises an error that names the bad field.';
