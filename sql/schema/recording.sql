-- Recording what meters report. Set-based: each function takes a whole batch
-- and writes each table with one statement. Idempotent: re-delivering the same
-- data (same meter or register and time) changes nothing. Nothing is dropped
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
           count(pg_catalog.pg_advisory_xact_lock(2051, x.key)) FILTER (WHERE NOT x.unknown)
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


-- Adds newly recorded half hours to the daily and monthly rollups (UK days
-- and months), aggregated per register and day; p_estimated: derived from reads.
CREATE FUNCTION flows.add_to_interval_rollups(
    p_register_ids uuid[],
    p_timestamps   timestamptz[],
    p_import_kwh   numeric[],
    p_export_kwh   numeric[],
    p_estimated    boolean
) RETURNS void
LANGUAGE sql
SET search_path = ''
BEGIN ATOMIC
    WITH daily AS (
        SELECT x.register_id, flows.uk_day(x.ts) AS day, coalesce(sum(x.import_kwh), 0) AS import_kwh,
               coalesce(sum(x.export_kwh), 0) AS export_kwh, count(*) AS intervals
        FROM unnest(p_register_ids, p_timestamps, p_import_kwh, p_export_kwh) AS x (register_id, ts, import_kwh, export_kwh)
        GROUP BY 1, 2
    ),
    added_days AS (
        INSERT INTO flows.register_interval_daily AS d (register_id, day, import_kwh, export_kwh, intervals, estimated)
        SELECT daily.*, CASE WHEN p_estimated THEN daily.intervals ELSE 0 END FROM daily ORDER BY register_id, day
        ON CONFLICT (register_id, day) DO UPDATE
            SET import_kwh = d.import_kwh + excluded.import_kwh,
                export_kwh = d.export_kwh + excluded.export_kwh,
                intervals = d.intervals + excluded.intervals,
                estimated = d.estimated + excluded.estimated
    )
    INSERT INTO flows.register_interval_monthly AS m (register_id, month, import_kwh, export_kwh, intervals)
    SELECT register_id, flows.uk_month(day), sum(import_kwh), sum(export_kwh), sum(intervals)
    FROM daily GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (register_id, month) DO UPDATE
        SET import_kwh = m.import_kwh + excluded.import_kwh,
            export_kwh = m.export_kwh + excluded.export_kwh,
            intervals = m.intervals + excluded.intervals;
END;


-- Recomputes the rollups of the UK days (and their months) that half hours
-- at p_timestamps fall on, from the half hours themselves.
CREATE FUNCTION flows.refresh_interval_rollups(p_register_ids uuid[], p_timestamps timestamptz[]) RETURNS void
LANGUAGE sql
SET search_path = ''
BEGIN ATOMIC
    INSERT INTO flows.register_interval_daily AS d (register_id, day, import_kwh, export_kwh, intervals, estimated)
    SELECT t.register_id, t.day, coalesce(sum(h.import_kwh), 0), coalesce(sum(h.export_kwh), 0), count(*),
           count(*) FILTER (WHERE h.source = 'reads')
    FROM (SELECT DISTINCT x.register_id, flows.uk_day(x.ts) AS day
          FROM unnest(p_register_ids, p_timestamps) AS x (register_id, ts)) AS t
    JOIN flows.register_interval_hh AS h
      ON h.register_id = t.register_id
     AND h."timestamp" >= flows.uk_day_start(t.day) AND h."timestamp" < flows.uk_day_start(t.day + 1)
    GROUP BY t.register_id, t.day
    ORDER BY t.register_id, t.day
    ON CONFLICT (register_id, day) DO UPDATE
        SET import_kwh = excluded.import_kwh, export_kwh = excluded.export_kwh, intervals = excluded.intervals,
            estimated = excluded.estimated;
    INSERT INTO flows.register_interval_monthly AS m (register_id, month, import_kwh, export_kwh, intervals)
    SELECT t.register_id, t.month, sum(d.import_kwh), sum(d.export_kwh), sum(d.intervals)
    FROM (SELECT DISTINCT x.register_id, flows.uk_month(flows.uk_day(x.ts)) AS month
          FROM unnest(p_register_ids, p_timestamps) AS x (register_id, ts)) AS t
    JOIN flows.register_interval_daily AS d
      ON d.register_id = t.register_id AND d.day >= t.month AND d.day < (t.month + interval '1 month')::date
    GROUP BY t.register_id, t.month
    ORDER BY t.register_id, t.month
    ON CONFLICT (register_id, month) DO UPDATE
        SET import_kwh = excluded.import_kwh, export_kwh = excluded.export_kwh, intervals = excluded.intervals;
END;


-- Energy per half hour for many registers at once: arrays of equal length
-- (import_kwh or export_kwh may be null: not measured). Merging with what is
-- stored: a new half hour is added; a stored one gains values it lacked;
-- values derived from reads give way to the meter's profile log. Keeps the
-- daily and monthly rollups exact. Returns the half hours added or changed.
-- SECURITY DEFINER: the only way to write half hours (readings.sql).
CREATE FUNCTION flows.record_interval_hh(
    p_register_ids uuid[],
    p_timestamps   timestamptz[],
    p_import_kwh   numeric[],
    p_export_kwh   numeric[],
    p_source       text DEFAULT 'profile_log'
) RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ''
SET plan_cache_mode = 'force_generic_plan'  -- its statements are cheaper to run than to plan
AS $$
DECLARE
    n integer := coalesce(pg_catalog.cardinality(p_register_ids), 0);
    first_time timestamptz;
    last_time timestamptz;
    added integer;
    changed integer;
BEGIN
    IF p_source IS NULL OR p_source NOT IN ('reads', 'profile_log') THEN
        RAISE EXCEPTION 'source must be reads or profile_log, got %', p_source
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF coalesce(pg_catalog.cardinality(p_timestamps), 0) <> n
       OR coalesce(pg_catalog.cardinality(p_import_kwh), n) <> n
       OR coalesce(pg_catalog.cardinality(p_export_kwh), n) <> n THEN
        RAISE EXCEPTION 'register_ids, timestamps, import_kwh and export_kwh must have the same length'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'import_kwh or export_kwh may be null: not measured';
    END IF;
    IF n = 0 THEN
        RETURN 0;
    END IF;
    SELECT min(t), max(t) INTO first_time, last_time FROM unnest(p_timestamps) AS t;
    PERFORM flows.check_reading_times(first_time, last_time);
    PERFORM flows.lock_known_registers(p_register_ids);
    PERFORM flows.ensure_partitions('flows.register_interval_hh', first_time, last_time);

    -- 1. The common case, all new: one plain insert (no conflict handling to
    --    pay for), and the rollups follow from the batch itself.
    BEGIN
        INSERT INTO flows.register_interval_hh (register_id, "timestamp", import_kwh, export_kwh, source)
        SELECT b.register_id, b.ts, b.import_kwh, b.export_kwh, p_source
        FROM unnest(p_register_ids, p_timestamps, p_import_kwh, p_export_kwh)
            AS b (register_id, ts, import_kwh, export_kwh);
        PERFORM flows.add_to_interval_rollups(p_register_ids, p_timestamps, p_import_kwh, p_export_kwh,
                                              p_source = 'reads');
        RETURN n;
    EXCEPTION WHEN unique_violation THEN
        NULL;  -- some are stored already: all undone, and recorded below
    END;

    -- 2. Some were stored already: add the new ones, fill what stored ones
    --    lack, let the profile log replace values derived from reads; then
    --    recompute the days touched.
    INSERT INTO flows.register_interval_hh (register_id, "timestamp", import_kwh, export_kwh, source)
    SELECT b.register_id, b.ts, b.import_kwh, b.export_kwh, p_source
    FROM unnest(p_register_ids, p_timestamps, p_import_kwh, p_export_kwh) AS b (register_id, ts, import_kwh, export_kwh)
    ON CONFLICT (register_id, "timestamp") DO NOTHING;
    GET DIAGNOSTICS added = ROW_COUNT;

    UPDATE flows.register_interval_hh AS h
    SET import_kwh = CASE WHEN d.take_import THEN d.import_kwh ELSE h.import_kwh END,
        export_kwh = CASE WHEN d.take_export THEN d.export_kwh ELSE h.export_kwh END,
        source = CASE WHEN p_source = 'profile_log' THEN 'profile_log' ELSE h.source END
    FROM (
        SELECT i.register_id, i.ts, i.import_kwh, i.export_kwh,
               i.import_kwh IS NOT NULL AND i.import_kwh IS DISTINCT FROM old.import_kwh
                   AND (old.import_kwh IS NULL OR (old.source = 'reads' AND p_source = 'profile_log')) AS take_import,
               i.export_kwh IS NOT NULL AND i.export_kwh IS DISTINCT FROM old.export_kwh
                   AND (old.export_kwh IS NULL OR (old.source = 'reads' AND p_source = 'profile_log')) AS take_export
        FROM (SELECT DISTINCT ON (b.register_id, b.ts) b.register_id, b.ts, b.import_kwh, b.export_kwh
              FROM unnest(p_register_ids, p_timestamps, p_import_kwh, p_export_kwh)
                  AS b (register_id, ts, import_kwh, export_kwh)
              ORDER BY b.register_id, b.ts) AS i
        JOIN flows.register_interval_hh AS old ON old.register_id = i.register_id AND old."timestamp" = i.ts
    ) AS d
    WHERE h.register_id = d.register_id AND h."timestamp" = d.ts AND (d.take_import OR d.take_export);
    GET DIAGNOSTICS changed = ROW_COUNT;
    IF added + changed > 0 THEN
        PERFORM flows.refresh_interval_rollups(p_register_ids, p_timestamps);
    END IF;
    RETURN added + changed;
END
$$;
COMMENT ON FUNCTION flows.record_interval_hh(uuid[], timestamptz[], numeric[], numeric[], text) IS
    'Records energy per half hour for many registers (arrays of equal length); idempotent; keeps rollups exact.';


-- Cumulative register reads, for the import or export table. New reads are
-- also noted for flows.estimate_interval_hh (the scheduler derives half hours
-- from them). SECURITY DEFINER: the only way to write reads (readings.sql).
CREATE FUNCTION flows.record_register_reads(
    p_register_ids uuid[],
    p_timestamps   timestamptz[],
    p_reads        numeric[],
    p_direction    text
) RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
    first_time timestamptz;
    last_time timestamptz;
    added integer;
BEGIN
    IF p_direction NOT IN ('import', 'export') THEN
        RAISE EXCEPTION 'direction must be import or export, got %', p_direction
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF coalesce(pg_catalog.cardinality(p_register_ids), 0) = 0 THEN
        RETURN 0;
    END IF;
    SELECT min(t), max(t) INTO first_time, last_time FROM unnest(p_timestamps) AS t;
    PERFORM flows.check_reading_times(first_time, last_time);
    PERFORM flows.lock_known_registers(p_register_ids);
    -- One static statement per table (no dynamic SQL: plans are cached, the SQL reads as SQL).
    IF p_direction = 'import' THEN
        PERFORM flows.ensure_partitions('flows.register_import', first_time, last_time);
        WITH new_reads AS (
            INSERT INTO flows.register_import AS r (register_id, "timestamp", read)
            SELECT * FROM unnest(p_register_ids, p_timestamps, p_reads)
            ON CONFLICT (register_id, "timestamp") DO NOTHING
            RETURNING r.register_id, r."timestamp"
        ),
        noted AS (INSERT INTO flows.reads_to_estimate SELECT * FROM new_reads ON CONFLICT DO NOTHING)
        SELECT count(*) INTO added FROM new_reads;
    ELSE
        PERFORM flows.ensure_partitions('flows.register_export', first_time, last_time);
        WITH new_reads AS (
            INSERT INTO flows.register_export AS r (register_id, "timestamp", read)
            SELECT * FROM unnest(p_register_ids, p_timestamps, p_reads)
            ON CONFLICT (register_id, "timestamp") DO NOTHING
            RETURNING r.register_id, r."timestamp"
        ),
        noted AS (INSERT INTO flows.reads_to_estimate SELECT * FROM new_reads ON CONFLICT DO NOTHING)
        SELECT count(*) INTO added FROM new_reads;
    END IF;
    RETURN added;
END
$$;


-- Half hours estimated from consecutive cumulative reads: a register is taken
-- to grow linearly between two reads, so its value at each half-hour boundary
-- in between is interpolated (rounded to the Wh) and each half hour whose both
-- ends are known gets the difference, import and export, with source 'reads'.
-- Only between reads at most 6 hours apart (longer gaps wait for the meter's
-- profile log), never across a fall (a reset register) or an implausible jump
-- (the reads are kept either way). For reads at p_timestamps (those new since
-- the last time); returns the half hours added or changed.
CREATE FUNCTION flows.interval_hh_from_reads(p_register_ids uuid[], p_timestamps timestamptz[])
RETURNS integer
LANGUAGE plpgsql
SET search_path = ''
SET plan_cache_mode = 'force_generic_plan'  -- planned once per session: planning costs more than running it
AS $$
DECLARE
    ids uuid[];
    times timestamptz[];
    imports numeric[];
    exports numeric[];
BEGIN
    IF coalesce(pg_catalog.cardinality(p_register_ids), 0) = 0 THEN
        RETURN 0;
    END IF;
    WITH span AS (
        SELECT b.register_id, min(b.ts) AS first_new, max(b.ts) AS last_new
        FROM unnest(p_register_ids, p_timestamps) AS b (register_id, ts) GROUP BY 1
    ),
    all_reads AS (
        SELECT 'import' AS direction, i.register_id, i."timestamp", i.read, s.first_new, s.last_new
        FROM flows.register_import AS i JOIN span AS s USING (register_id)
        WHERE i."timestamp" BETWEEN s.first_new - interval '13 hours' AND s.last_new + interval '13 hours'
        UNION ALL
        SELECT 'export', e.register_id, e."timestamp", e.read, s.first_new, s.last_new
        FROM flows.register_export AS e JOIN span AS s USING (register_id)
        WHERE e."timestamp" BETWEEN s.first_new - interval '13 hours' AND s.last_new + interval '13 hours'
    ),
    ranked AS (  -- the new reads and two either side: a half hour across a neighbouring read
                 -- takes one boundary from the pair before (or after) it. Half hours ending
                 -- before the read preceding the new ones (previous) were estimated already.
        SELECT r.*,
               row_number() OVER (PARTITION BY r.direction, r.register_id, r."timestamp" < r.first_new
                                  ORDER BY r."timestamp" DESC) AS before_rank,
               row_number() OVER (PARTITION BY r.direction, r.register_id, r."timestamp" > r.last_new
                                  ORDER BY r."timestamp") AS after_rank,
               max(r."timestamp") FILTER (WHERE r."timestamp" < r.first_new)
                   OVER (PARTITION BY r.direction, r.register_id) AS previous
        FROM all_reads AS r
    ),
    pairs AS (
        SELECT direction, register_id, previous, "timestamp" AS t0, read AS v0,
               lead("timestamp") OVER w AS t1, lead(read) OVER w AS v1
        FROM ranked
        WHERE ("timestamp" >= first_new OR before_rank <= 2) AND ("timestamp" <= last_new OR after_rank <= 2)
        WINDOW w AS (PARTITION BY direction, register_id ORDER BY "timestamp")
    ),
    boundaries AS (  -- cumulative value at each half-hour boundary between two reads
        SELECT DISTINCT ON (p.direction, p.register_id, b.b) p.direction, p.register_id, p.previous, b.b,
               round(p.v0 + (p.v1 - p.v0) * extract(epoch FROM b.b - p.t0) / extract(epoch FROM p.t1 - p.t0), 3) AS c
        FROM pairs AS p
        CROSS JOIN LATERAL generate_series(
            date_bin('30 minutes', p.t0 - interval '1 microsecond', 'epoch') + interval '30 minutes',
            p.t1, interval '30 minutes') AS b (b)
        WHERE p.t1 IS NOT NULL AND p.t1 - p.t0 <= interval '6 hours' AND p.v1 >= p.v0
          -- a jump beyond what a half hour can hold (register_interval_hh_kwh_range) is no estimate
          AND (p.v1 - p.v0) / greatest(extract(epoch FROM p.t1 - p.t0) / 1800, 1) <= 500
        ORDER BY p.direction, p.register_id, b.b
    ),
    half_hours AS (
        SELECT direction, register_id, previous, b, lead(b) OVER w AS b1, lead(c) OVER w - c AS kwh
        FROM boundaries WINDOW w AS (PARTITION BY direction, register_id ORDER BY b)
    ),
    both_directions AS (
        SELECT register_id, b,
               max(kwh) FILTER (WHERE direction = 'import') AS import_kwh,
               max(kwh) FILTER (WHERE direction = 'export') AS export_kwh
        FROM half_hours
        WHERE b1 = b + interval '30 minutes' AND (previous IS NULL OR b1 > previous)
        GROUP BY register_id, b
    )
    SELECT array_agg(register_id), array_agg(b), array_agg(import_kwh), array_agg(export_kwh)
    INTO ids, times, imports, exports
    FROM both_directions;
    IF ids IS NULL THEN
        RETURN 0;
    END IF;
    RETURN flows.record_interval_hh(ids, times, imports, exports, 'reads');
END
$$;


-- Reads not yet turned into estimated half hours: noted by
-- flows.record_register_reads, taken by flows.estimate_interval_hh (from the
-- scheduler), so a sync's transaction stays short and the estimates for every
-- meter are made in one set-based pass.
CREATE TABLE flows.reads_to_estimate (
    register_id uuid        NOT NULL,
    "timestamp" timestamptz NOT NULL,
    PRIMARY KEY (register_id, "timestamp")
);
COMMENT ON TABLE flows.reads_to_estimate IS 'New register reads waiting for flows.estimate_interval_hh.';

-- Estimates the half hours the reads noted since the last pass make known;
-- returns the half hours added or changed. SECURITY DEFINER: the queue is
-- internal (no role has privileges on it).
CREATE FUNCTION flows.estimate_interval_hh() RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
    ids uuid[];
    times timestamptz[];
BEGIN
    WITH taken AS (DELETE FROM flows.reads_to_estimate RETURNING register_id, "timestamp")
    SELECT array_agg(register_id), array_agg("timestamp") INTO ids, times FROM taken;
    RETURN flows.interval_hh_from_reads(ids, times);
END
$$;
COMMENT ON FUNCTION flows.estimate_interval_hh() IS
    'Turns the reads recorded since the last call into estimated half hours (the scheduler calls it).';


-- The fields of a meter state and the checks each must pass. Raises an error
-- naming the first bad field.
CREATE FUNCTION flows.check_meter_state(state jsonb) RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = ''
AS $$
DECLARE
    field text;
    value jsonb;
    kind text;
    number numeric;
BEGIN
    IF pg_catalog.jsonb_typeof(state) IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION 'a meter state must be a JSON object' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF coalesce(state -> 'meter_id', 'null') = 'null' OR coalesce(state -> 'observed_at', 'null') = 'null' THEN
        RAISE EXCEPTION 'a meter state needs meter_id and observed_at' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR field, value IN SELECT e.key, e.value FROM pg_catalog.jsonb_each(state) AS e WHERE e.value <> 'null' LOOP
        kind := pg_catalog.jsonb_typeof(value);
        number := CASE WHEN kind = 'number' OR (kind = 'string' AND (value #>> '{}') ~ '^-?\d+(\.\d+)?$')
                       THEN (value #>> '{}')::numeric END;
        CASE
            WHEN field = 'meter_id' THEN
                IF kind <> 'string' OR (value #>> '{}') !~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN
                    RAISE EXCEPTION 'meter state field meter_id must be a meter id (uuid), got %', value
                        USING ERRCODE = 'invalid_parameter_value';
                END IF;
            WHEN field = 'observed_at' THEN
                IF kind <> 'string' OR NOT flows.is_iso_time(value #>> '{}') THEN
                    RAISE EXCEPTION 'meter state field observed_at must be an ISO 8601 time with offset, got %', value
                        USING ERRCODE = 'invalid_parameter_value', HINT = 'e.g. "2026-11-21T10:00:00Z"';
                END IF;
            WHEN field IN ('balance', 'emergency_credit') THEN
                IF number IS NULL OR number NOT BETWEEN -21474.83648 AND 21474.83647 OR pg_catalog.scale(number) > 5 THEN
                    RAISE EXCEPTION 'meter state field % must be an amount in GBP (at most 5 decimals), got %', field, value
                        USING ERRCODE = 'invalid_parameter_value';
                END IF;
            WHEN field = 'csq' THEN
                IF number IS NULL OR NOT (number BETWEEN 0 AND 31 OR number = 99) OR pg_catalog.scale(number) > 0 THEN
                    RAISE EXCEPTION 'meter state field csq must be 0 to 31, or 99 for unknown; got %', value
                        USING ERRCODE = 'invalid_parameter_value';
                END IF;
            WHEN field IN ('voltage', 'voltage_l1', 'voltage_l2', 'voltage_l3') THEN
                IF number IS NULL OR number NOT BETWEEN 0 AND 500 THEN
                    RAISE EXCEPTION 'meter state field % must be volts between 0 and 500, got %', field, value
                        USING ERRCODE = 'invalid_parameter_value';
                END IF;
            WHEN field IN ('import_a', 'export_a', 'import_b', 'export_b') THEN
                IF number IS NULL OR number < 0 THEN
                    RAISE EXCEPTION 'meter state field % must be a cumulative read in kWh (0 or more), got %', field, value
                        USING ERRCODE = 'invalid_parameter_value';
                END IF;
            WHEN field = 'health' THEN
                IF value NOT IN ('"healthy"', '"unhealthy"') THEN
                    RAISE EXCEPTION 'meter state field health must be healthy or unhealthy, got %', value
                        USING ERRCODE = 'invalid_parameter_value';
                END IF;
            WHEN field IN ('health_details', 'backlight', 'load_switch') THEN
                IF kind <> 'string' THEN
                    RAISE EXCEPTION 'meter state field % must be text, got %', field, value
                        USING ERRCODE = 'invalid_parameter_value';
                END IF;
            WHEN field = 'clock_time_diff_seconds' THEN
                IF number IS NULL OR pg_catalog.scale(number) > 0 OR abs(number) > 2147483647 THEN
                    RAISE EXCEPTION 'meter state field clock_time_diff_seconds must be whole seconds, got %', value
                        USING ERRCODE = 'invalid_parameter_value';
                END IF;
            WHEN field = 'prepay_enabled' THEN
                IF kind <> 'boolean' THEN
                    RAISE EXCEPTION 'meter state field prepay_enabled must be true or false, got %', value
                        USING ERRCODE = 'invalid_parameter_value';
                END IF;
            WHEN field = 'tariffs_active' THEN
                PERFORM flows.tariff_is_valid(value, false);
            WHEN field = 'tariffs_future' THEN
                PERFORM flows.tariff_is_valid(value, true);
            ELSE
                RAISE EXCEPTION 'unknown meter state field %', field
                    USING ERRCODE = 'invalid_parameter_value',
                          HINT = 'fields: balance, emergency_credit, csq, voltage, voltage_l1..3, import_a, export_a, '
                              || 'import_b, export_b, health, health_details, tariffs_active, tariffs_future, '
                              || 'clock_time_diff_seconds, backlight, load_switch, prepay_enabled';
        END CASE;
    END LOOP;
END
$$;


-- A batch of meter states as rows (the fields of flows.check_meter_state).
CREATE FUNCTION flows.meter_state_rows(p_states jsonb)
RETURNS TABLE (
    meter_id uuid, observed_at timestamptz, balance numeric, emergency_credit numeric, csq smallint,
    voltage numeric, voltage_l1 numeric, voltage_l2 numeric, voltage_l3 numeric,
    import_a numeric, export_a numeric, import_b numeric, export_b numeric,
    health text, health_details text, tariffs_active jsonb, tariffs_future jsonb,
    clock_time_diff_seconds integer, backlight text, load_switch text, prepay_enabled boolean
)
LANGUAGE sql IMMUTABLE
AS $$
    SELECT * FROM pg_catalog.jsonb_to_recordset(p_states) AS s (
        meter_id uuid, observed_at timestamptz, balance numeric, emergency_credit numeric, csq smallint,
        voltage numeric, voltage_l1 numeric, voltage_l2 numeric, voltage_l3 numeric,
        import_a numeric, export_a numeric, import_b numeric, export_b numeric,
        health text, health_details text, tariffs_active jsonb, tariffs_future jsonb,
        clock_time_diff_seconds integer, backlight text, load_switch text, prepay_enabled boolean)
$$;


-- Records new state for many meters: a JSON array of objects with meter_id,
-- observed_at and any state fields (see flows.check_meter_state). Updates the
-- shadows (a field only moves forward in time: late data never overwrites
-- newer state) and appends the history rows, in one transaction.
-- Reads go to the register measuring that element at observed_at (A or
-- SINGLE for *_a, B for *_b), swapped when the register is direction_reversed.
-- Returns the number of history rows appended.
CREATE FUNCTION flows.record_meter_states(p_states jsonb) RETURNS integer
LANGUAGE plpgsql
SET search_path = ''
SET plan_cache_mode = 'force_generic_plan'  -- its statements are cheaper to run than to plan
AS $$
DECLARE
    state jsonb;
    appended integer := 0;
    rows integer;
    first_time timestamptz;
    last_time timestamptz;
    problem text;
    import_ids uuid[];
    import_times timestamptz[];
    import_reads numeric[];
    export_ids uuid[];
    export_times timestamptz[];
    export_reads numeric[];
BEGIN
    IF pg_catalog.jsonb_typeof(p_states) IS DISTINCT FROM 'array' THEN
        RAISE EXCEPTION 'meter states must be a JSON array of objects' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF pg_catalog.jsonb_array_length(p_states) = 0 THEN
        RETURN 0;
    END IF;
    FOR state IN SELECT pg_catalog.jsonb_array_elements(p_states) LOOP
        PERFORM flows.check_meter_state(state);
    END LOOP;

    SELECT min(b.observed_at), max(b.observed_at) INTO first_time, last_time FROM flows.meter_state_rows(p_states) AS b;
    PERFORM flows.check_reading_times(first_time, last_time);
    SELECT string_agg(DISTINCT b.meter_id::text, ', ') INTO problem
    FROM flows.meter_state_rows(p_states) AS b
    WHERE NOT EXISTS (SELECT FROM flows.meter_shadows AS sh WHERE sh.id = b.meter_id);
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION 'unknown meter: %', problem USING ERRCODE = 'foreign_key_violation';
    END IF;

    -- Reads -> registers. Every read must land on a register.
    SELECT array_agg(r.register_id) FILTER (WHERE r.to_export IS FALSE),
           array_agg(b.observed_at) FILTER (WHERE r.to_export IS FALSE),
           array_agg(v.value) FILTER (WHERE r.to_export IS FALSE),
           array_agg(r.register_id) FILTER (WHERE r.to_export),
           array_agg(b.observed_at) FILTER (WHERE r.to_export),
           array_agg(v.value) FILTER (WHERE r.to_export),
           string_agg(DISTINCT pg_catalog.format('meter %s element %s at %s', b.meter_id, v.element, b.observed_at),
                      '; ') FILTER (WHERE r.register_id IS NULL)
    INTO import_ids, import_times, import_reads, export_ids, export_times, export_reads, problem
    FROM flows.meter_state_rows(p_states) AS b
    CROSS JOIN LATERAL (VALUES (false, 'A', b.import_a), (true, 'A', b.export_a),
                               (false, 'B', b.import_b), (true, 'B', b.export_b))
        AS v (is_export, element, value)
    LEFT JOIN LATERAL (
        SELECT m.register_id, m.direction_reversed <> v.is_export AS to_export
        FROM flows.meter_registers AS m
        WHERE m.meter_id = b.meter_id
          AND (m.element = v.element OR (v.element = 'A' AND m.element = 'SINGLE'))
          AND m.start_time <= b.observed_at AND (m.end_time IS NULL OR b.observed_at < m.end_time)
    ) AS r ON true
    WHERE v.value IS NOT NULL;
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION 'read for a register that does not exist: %', problem
            USING ERRCODE = 'foreign_key_violation',
                  HINT = 'add the meter''s registers (meter_registers) for the elements it reports';
    END IF;
    appended := flows.record_register_reads(import_ids, import_times, import_reads, 'import')
              + flows.record_register_reads(export_ids, export_times, export_reads, 'export');

    PERFORM flows.ensure_partitions(t, first_time, last_time)
    FROM unnest(ARRAY['flows.meter_prepay_balance', 'flows.meter_csq', 'flows.meter_voltage',
                      'flows.meter_3p_voltage', 'flows.meter_health_history', 'flows.meter_clock_drift']::regclass[]) AS t;

    -- History, one statement per table for the whole batch.
    INSERT INTO flows.meter_prepay_balance (meter_id, "timestamp", balance, emergency_credit)
    SELECT b.meter_id, b.observed_at, b.balance, b.emergency_credit
    FROM flows.meter_state_rows(p_states) AS b WHERE b.balance IS NOT NULL
    ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS rows = ROW_COUNT; appended := appended + rows;

    INSERT INTO flows.meter_csq (meter_id, "timestamp", csq)
    SELECT b.meter_id, b.observed_at, b.csq FROM flows.meter_state_rows(p_states) AS b WHERE b.csq IS NOT NULL
    ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS rows = ROW_COUNT; appended := appended + rows;

    INSERT INTO flows.meter_voltage (meter_id, "timestamp", voltage)
    SELECT b.meter_id, b.observed_at, b.voltage FROM flows.meter_state_rows(p_states) AS b WHERE b.voltage IS NOT NULL
    ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS rows = ROW_COUNT; appended := appended + rows;

    INSERT INTO flows.meter_3p_voltage (meter_id, "timestamp", l1, l2, l3)
    SELECT b.meter_id, b.observed_at, b.voltage_l1, b.voltage_l2, b.voltage_l3
    FROM flows.meter_state_rows(p_states) AS b
    WHERE coalesce(b.voltage_l1, b.voltage_l2, b.voltage_l3) IS NOT NULL
    ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS rows = ROW_COUNT; appended := appended + rows;

    INSERT INTO flows.meter_health_history (meter_id, "timestamp", health, reason)
    SELECT b.meter_id, b.observed_at, b.health, b.health_details
    FROM flows.meter_state_rows(p_states) AS b WHERE b.health IS NOT NULL
    ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS rows = ROW_COUNT; appended := appended + rows;

    INSERT INTO flows.meter_clock_drift (meter_id, "timestamp", seconds)
    SELECT b.meter_id, b.observed_at, b.clock_time_diff_seconds
    FROM flows.meter_state_rows(p_states) AS b WHERE b.clock_time_diff_seconds IS NOT NULL
    ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS rows = ROW_COUNT; appended := appended + rows;

    -- Tariffs: a history row only when the tariff differs from the one before it.
    INSERT INTO flows.meter_tariff_history (meter_id, "timestamp", kind, tariff)
    SELECT b.meter_id, b.observed_at, t.kind, t.tariff
    FROM flows.meter_state_rows(p_states) AS b
    CROSS JOIN LATERAL (VALUES ('active', b.tariffs_active), ('future', b.tariffs_future)) AS t (kind, tariff)
    WHERE t.tariff IS NOT NULL
      AND t.tariff IS DISTINCT FROM (
          SELECT h.tariff FROM flows.meter_tariff_history AS h
          WHERE h.meter_id = b.meter_id AND h.kind = t.kind AND h."timestamp" < b.observed_at
          ORDER BY h."timestamp" DESC LIMIT 1)
    ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS rows = ROW_COUNT; appended := appended + rows;

    -- Shadows: per meter and group of fields, the latest observation, applied
    -- only if it is not older than what the shadow already holds.
    UPDATE flows.meter_shadows AS sh
    SET balance = CASE WHEN l.balance_at >= coalesce(sh.balance_updated_at, '-infinity') THEN l.balance ELSE sh.balance END,
        emergency_credit = CASE WHEN l.balance_at >= coalesce(sh.balance_updated_at, '-infinity')
                                THEN l.emergency_credit ELSE sh.emergency_credit END,
        balance_updated_at = greatest(sh.balance_updated_at, l.balance_at),

        csq = CASE WHEN l.csq_at >= coalesce(sh.csq_updated_at, '-infinity') THEN l.csq ELSE sh.csq END,
        csq_updated_at = greatest(sh.csq_updated_at, l.csq_at),

        voltage = CASE WHEN l.voltage_at >= coalesce(sh.voltage_updated_at, '-infinity') THEN l.voltage ELSE sh.voltage END,
        voltage_l1 = CASE WHEN l.voltage_at >= coalesce(sh.voltage_updated_at, '-infinity') THEN l.voltage_l1 ELSE sh.voltage_l1 END,
        voltage_l2 = CASE WHEN l.voltage_at >= coalesce(sh.voltage_updated_at, '-infinity') THEN l.voltage_l2 ELSE sh.voltage_l2 END,
        voltage_l3 = CASE WHEN l.voltage_at >= coalesce(sh.voltage_updated_at, '-infinity') THEN l.voltage_l3 ELSE sh.voltage_l3 END,
        voltage_updated_at = greatest(sh.voltage_updated_at, l.voltage_at),

        import_a = CASE WHEN l.reads_at >= coalesce(sh.reads_updated_at, '-infinity') THEN coalesce(l.import_a, sh.import_a) ELSE sh.import_a END,
        export_a = CASE WHEN l.reads_at >= coalesce(sh.reads_updated_at, '-infinity') THEN coalesce(l.export_a, sh.export_a) ELSE sh.export_a END,
        import_b = CASE WHEN l.reads_at >= coalesce(sh.reads_updated_at, '-infinity') THEN coalesce(l.import_b, sh.import_b) ELSE sh.import_b END,
        export_b = CASE WHEN l.reads_at >= coalesce(sh.reads_updated_at, '-infinity') THEN coalesce(l.export_b, sh.export_b) ELSE sh.export_b END,
        reads_updated_at = greatest(sh.reads_updated_at, l.reads_at),

        health = CASE WHEN l.health_at >= coalesce(sh.health_updated_at, '-infinity') THEN l.health ELSE sh.health END,
        health_details = CASE WHEN l.health_at >= coalesce(sh.health_updated_at, '-infinity')
                              THEN l.health_details ELSE sh.health_details END,
        health_updated_at = greatest(sh.health_updated_at, l.health_at),
        last_healthy_at = greatest(sh.last_healthy_at, l.healthy_at),

        tariffs_active = CASE WHEN l.tariffs_at >= coalesce(sh.tariffs_updated_at, '-infinity')
                              THEN coalesce(l.tariffs_active, sh.tariffs_active) ELSE sh.tariffs_active END,
        tariffs_future = CASE WHEN l.tariffs_at >= coalesce(sh.tariffs_updated_at, '-infinity')
                              THEN coalesce(l.tariffs_future, sh.tariffs_future) ELSE sh.tariffs_future END,
        tariffs_updated_at = greatest(sh.tariffs_updated_at, l.tariffs_at),

        clock_time_diff_seconds = CASE WHEN l.clock_at >= coalesce(sh.clock_checked_at, '-infinity')
                                       THEN l.clock_time_diff_seconds ELSE sh.clock_time_diff_seconds END,
        clock_checked_at = greatest(sh.clock_checked_at, l.clock_at),

        backlight = CASE WHEN l.settings_at >= coalesce(sh.settings_updated_at, '-infinity')
                         THEN coalesce(l.backlight, sh.backlight) ELSE sh.backlight END,
        load_switch = CASE WHEN l.settings_at >= coalesce(sh.settings_updated_at, '-infinity')
                           THEN coalesce(l.load_switch, sh.load_switch) ELSE sh.load_switch END,
        prepay_enabled = CASE WHEN l.settings_at >= coalesce(sh.settings_updated_at, '-infinity')
                              THEN coalesce(l.prepay_enabled, sh.prepay_enabled) ELSE sh.prepay_enabled END,
        settings_updated_at = greatest(sh.settings_updated_at, l.settings_at)
    FROM (
        SELECT meter_id,
               max(observed_at) FILTER (WHERE balance IS NOT NULL) AS balance_at,
               (array_agg(balance ORDER BY observed_at DESC) FILTER (WHERE balance IS NOT NULL))[1] AS balance,
               (array_agg(emergency_credit ORDER BY observed_at DESC) FILTER (WHERE balance IS NOT NULL))[1]
                   AS emergency_credit,
               max(observed_at) FILTER (WHERE csq IS NOT NULL) AS csq_at,
               (array_agg(csq ORDER BY observed_at DESC) FILTER (WHERE csq IS NOT NULL))[1] AS csq,
               max(observed_at) FILTER (WHERE coalesce(voltage, voltage_l1, voltage_l2, voltage_l3) IS NOT NULL)
                   AS voltage_at,
               (array_agg(voltage ORDER BY observed_at DESC)
                   FILTER (WHERE coalesce(voltage, voltage_l1, voltage_l2, voltage_l3) IS NOT NULL))[1] AS voltage,
               (array_agg(voltage_l1 ORDER BY observed_at DESC)
                   FILTER (WHERE coalesce(voltage, voltage_l1, voltage_l2, voltage_l3) IS NOT NULL))[1] AS voltage_l1,
               (array_agg(voltage_l2 ORDER BY observed_at DESC)
                   FILTER (WHERE coalesce(voltage, voltage_l1, voltage_l2, voltage_l3) IS NOT NULL))[1] AS voltage_l2,
               (array_agg(voltage_l3 ORDER BY observed_at DESC)
                   FILTER (WHERE coalesce(voltage, voltage_l1, voltage_l2, voltage_l3) IS NOT NULL))[1] AS voltage_l3,
               max(observed_at) FILTER (WHERE coalesce(import_a, export_a, import_b, export_b) IS NOT NULL) AS reads_at,
               (array_agg(import_a ORDER BY observed_at DESC) FILTER (WHERE import_a IS NOT NULL))[1] AS import_a,
               (array_agg(export_a ORDER BY observed_at DESC) FILTER (WHERE export_a IS NOT NULL))[1] AS export_a,
               (array_agg(import_b ORDER BY observed_at DESC) FILTER (WHERE import_b IS NOT NULL))[1] AS import_b,
               (array_agg(export_b ORDER BY observed_at DESC) FILTER (WHERE export_b IS NOT NULL))[1] AS export_b,
               max(observed_at) FILTER (WHERE health IS NOT NULL) AS health_at,
               (array_agg(health ORDER BY observed_at DESC) FILTER (WHERE health IS NOT NULL))[1] AS health,
               (array_agg(health_details ORDER BY observed_at DESC) FILTER (WHERE health IS NOT NULL))[1]
                   AS health_details,
               max(observed_at) FILTER (WHERE health = 'healthy') AS healthy_at,
               max(observed_at) FILTER (WHERE coalesce(tariffs_active, tariffs_future) IS NOT NULL) AS tariffs_at,
               (array_agg(tariffs_active ORDER BY observed_at DESC) FILTER (WHERE tariffs_active IS NOT NULL))[1]
                   AS tariffs_active,
               (array_agg(tariffs_future ORDER BY observed_at DESC) FILTER (WHERE tariffs_future IS NOT NULL))[1]
                   AS tariffs_future,
               max(observed_at) FILTER (WHERE clock_time_diff_seconds IS NOT NULL) AS clock_at,
               (array_agg(clock_time_diff_seconds ORDER BY observed_at DESC)
                   FILTER (WHERE clock_time_diff_seconds IS NOT NULL))[1] AS clock_time_diff_seconds,
               max(observed_at) FILTER (WHERE coalesce(backlight, load_switch, prepay_enabled::text) IS NOT NULL)
                   AS settings_at,
               (array_agg(backlight ORDER BY observed_at DESC) FILTER (WHERE backlight IS NOT NULL))[1] AS backlight,
               (array_agg(load_switch ORDER BY observed_at DESC) FILTER (WHERE load_switch IS NOT NULL))[1]
                   AS load_switch,
               (array_agg(prepay_enabled ORDER BY observed_at DESC) FILTER (WHERE prepay_enabled IS NOT NULL))[1]
                   AS prepay_enabled
        FROM flows.meter_state_rows(p_states)
        GROUP BY meter_id
    ) AS l
    WHERE sh.id = l.meter_id;

    RETURN appended;
END
$$;
COMMENT ON FUNCTION flows.record_meter_states(jsonb) IS
    'Records the observed state of many meters: updates meter_shadows and appends history, in one transaction.';


-- Entries of a meter's event log (arrays of equal length). Event ids no one
-- has named yet are added to meter_event_log_type as unknown_<id>, so no event
-- is ever dropped. Returns the number of new events.
CREATE FUNCTION flows.record_meter_events(
    p_meter_id    uuid,
    p_timestamps  timestamptz[],
    p_event_types integer[],
    p_event_sets  integer[]
) RETURNS integer
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    first_time timestamptz;
    last_time timestamptz;
    added integer;
BEGIN
    IF coalesce(pg_catalog.cardinality(p_timestamps), 0) = 0 THEN
        RETURN 0;
    END IF;
    IF pg_catalog.cardinality(p_event_types) <> pg_catalog.cardinality(p_timestamps)
       OR pg_catalog.cardinality(p_event_sets) <> pg_catalog.cardinality(p_timestamps) THEN
        RAISE EXCEPTION 'timestamps, event_types and event_sets must have the same length'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT EXISTS (SELECT FROM flows.meter_registry AS m WHERE m.id = p_meter_id) THEN
        RAISE EXCEPTION 'unknown meter: %', p_meter_id USING ERRCODE = 'foreign_key_violation';
    END IF;
    SELECT min(t), max(t) INTO first_time, last_time FROM unnest(p_timestamps) AS t;
    PERFORM flows.check_reading_times(first_time, last_time);
    PERFORM flows.ensure_partitions('flows.meter_event_log', first_time, last_time);
    INSERT INTO flows.meter_event_log_type (id, name)
    SELECT DISTINCT t, 'unknown_' || t FROM unnest(p_event_types) AS t
    ON CONFLICT (id) DO NOTHING;
    INSERT INTO flows.meter_event_log (meter_id, "timestamp", event_type, event_set)
    SELECT p_meter_id, e.ts, e.event_type, e.event_set
    FROM unnest(p_timestamps, p_event_types, p_event_sets) AS e (ts, event_type, event_set)
    ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS added = ROW_COUNT;
    RETURN added;
END
$$;
