-- What every writer of meter data checks first. Recording is set-based (each
-- function takes a whole batch and writes each table with one statement) and
-- idempotent (re-delivering the same data changes nothing). Nothing is dropped
-- silently: a reading for an unknown meter or register, or an implausible
-- value, is an error naming what is wrong, and nothing of the batch is kept.

-- Reading times must be plausible: not null, not before 2000, at most a day
-- ahead of the server clock (meter clocks drift; see meters_clock_drift).
CREATE FUNCTION flows.check_reading_times(first_time timestamptz, last_time timestamptz) RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = ''
AS $$
BEGIN
    IF first_time IS NULL OR last_time IS NULL THEN
        RAISE EXCEPTION 'reading times must not be null' USING ERRCODE = 'not_null_violation';
    END IF;
    IF first_time < '2000-01-01 00:00+00' OR last_time > pg_catalog.now() + interval '1 day' THEN
        RAISE EXCEPTION 'reading time % is implausible',
            CASE WHEN first_time < '2000-01-01 00:00+00' THEN first_time ELSE last_time END
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'times must lie between 2000-01-01 and a day from now; check the meter clock';
    END IF;
END
$$;


-- Every register in a batch must exist (the readings tables carry no per-row
-- foreign key; see readings.sql): raises naming the unknown ones. Then takes
-- a transaction lock per register, in one order (no deadlocks), so writers of
-- the same registers' half hours take turns and the rollups stay exact.
CREATE FUNCTION flows.lock_known_registers(p_register_ids uuid[]) RETURNS void
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    unknown text;
    locked bigint;
BEGIN
    SELECT string_agg(coalesce(x.r::text, 'null'), ', ' ORDER BY x.r) FILTER (WHERE x.unknown),
           count(pg_catalog.pg_advisory_xact_lock(flows.lock_key('register_writes'), x.key)) FILTER (WHERE NOT x.unknown)
    INTO unknown, locked
    FROM (
        SELECT d.r, pg_catalog.hashtext(d.r::text) AS key,
               d.r IS NULL OR NOT EXISTS (SELECT FROM flows.meter_registers AS m WHERE m.register_id = d.r) AS unknown
        FROM (SELECT DISTINCT r FROM unnest(p_register_ids) AS r) AS d
        ORDER BY 2
    ) AS x;
    IF unknown IS NOT NULL THEN
        RAISE EXCEPTION 'unknown register: %', unknown
            USING ERRCODE = 'foreign_key_violation', HINT = 'add the meter''s registers (meter_registers) first';
    END IF;
END
$$;
