-- Meter states: what a worker (or an administrator) observed of a meter at one
-- moment. flows.record_meter_states writes a batch of them to the digital twin
-- (meter_shadows) and its history tables.

-- The fields of a meter state, once: the JSON objects a batch holds
-- (flows.check_meter_state says what each may hold) read as rows of this type.
-- The worker's Python mirror is flows.worker.outcome.MeterState.
CREATE TYPE flows.meter_state AS (
    meter_id                uuid,
    observed_at             timestamptz,
    balance                 numeric,
    emergency_credit        numeric,
    csq                     smallint,
    voltage                 numeric,
    voltage_l1              numeric,
    voltage_l2              numeric,
    voltage_l3              numeric,
    import_a                numeric,
    export_a                numeric,
    import_b                numeric,
    export_b                numeric,
    health                  text,
    health_details          text,
    tariffs_active          jsonb,
    tariffs_future          jsonb,
    clock_time_diff_seconds integer,
    backlight               text,
    load_switch             text,
    prepay_enabled          boolean
);
COMMENT ON TYPE flows.meter_state IS 'One observation of a meter (the objects flows.record_meter_states takes).';

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


-- A batch of meter states as rows. Plain SQL, no SET clause: the planner
-- inlines it into each statement that reads the batch.
CREATE FUNCTION flows.meter_state_rows(p_states jsonb) RETURNS SETOF flows.meter_state
LANGUAGE sql IMMUTABLE
AS $$
    SELECT * FROM pg_catalog.jsonb_populate_recordset(NULL::flows.meter_state, p_states)
$$;


-- The value a shadow field takes: the one observed at p_seen_at, unless the
-- shadow holds one observed later (late data never overwrites newer state).
-- Plain SQL, no SET clause: inlined into the update.
CREATE FUNCTION flows.newer(p_held anyelement, p_held_at timestamptz, p_seen anyelement, p_seen_at timestamptz)
RETURNS anyelement
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN p_seen_at >= coalesce(p_held_at, '-infinity') THEN p_seen ELSE p_held END
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
    SET balance = flows.newer(sh.balance, sh.balance_updated_at, l.balance, l.balance_at),
        emergency_credit = flows.newer(sh.emergency_credit, sh.balance_updated_at, l.emergency_credit, l.balance_at),
        balance_updated_at = greatest(sh.balance_updated_at, l.balance_at),

        csq = flows.newer(sh.csq, sh.csq_updated_at, l.csq, l.csq_at),
        csq_updated_at = greatest(sh.csq_updated_at, l.csq_at),

        voltage = flows.newer(sh.voltage, sh.voltage_updated_at, l.voltage, l.voltage_at),
        voltage_l1 = flows.newer(sh.voltage_l1, sh.voltage_updated_at, l.voltage_l1, l.voltage_at),
        voltage_l2 = flows.newer(sh.voltage_l2, sh.voltage_updated_at, l.voltage_l2, l.voltage_at),
        voltage_l3 = flows.newer(sh.voltage_l3, sh.voltage_updated_at, l.voltage_l3, l.voltage_at),
        voltage_updated_at = greatest(sh.voltage_updated_at, l.voltage_at),

        -- reads, tariffs and settings: a field the observation lacks keeps its value
        import_a = flows.newer(sh.import_a, sh.reads_updated_at, coalesce(l.import_a, sh.import_a), l.reads_at),
        export_a = flows.newer(sh.export_a, sh.reads_updated_at, coalesce(l.export_a, sh.export_a), l.reads_at),
        import_b = flows.newer(sh.import_b, sh.reads_updated_at, coalesce(l.import_b, sh.import_b), l.reads_at),
        export_b = flows.newer(sh.export_b, sh.reads_updated_at, coalesce(l.export_b, sh.export_b), l.reads_at),
        reads_updated_at = greatest(sh.reads_updated_at, l.reads_at),

        health = flows.newer(sh.health, sh.health_updated_at, l.health, l.health_at),
        health_details = flows.newer(sh.health_details, sh.health_updated_at, l.health_details, l.health_at),
        health_updated_at = greatest(sh.health_updated_at, l.health_at),
        last_healthy_at = greatest(sh.last_healthy_at, l.healthy_at),

        tariffs_active = flows.newer(sh.tariffs_active, sh.tariffs_updated_at,
                                     coalesce(l.tariffs_active, sh.tariffs_active), l.tariffs_at),
        tariffs_future = flows.newer(sh.tariffs_future, sh.tariffs_updated_at,
                                     coalesce(l.tariffs_future, sh.tariffs_future), l.tariffs_at),
        tariffs_updated_at = greatest(sh.tariffs_updated_at, l.tariffs_at),

        clock_time_diff_seconds = flows.newer(sh.clock_time_diff_seconds, sh.clock_checked_at,
                                              l.clock_time_diff_seconds, l.clock_at),
        clock_checked_at = greatest(sh.clock_checked_at, l.clock_at),

        backlight = flows.newer(sh.backlight, sh.settings_updated_at, coalesce(l.backlight, sh.backlight),
                                l.settings_at),
        load_switch = flows.newer(sh.load_switch, sh.settings_updated_at, coalesce(l.load_switch, sh.load_switch),
                                  l.settings_at),
        prepay_enabled = flows.newer(sh.prepay_enabled, sh.settings_updated_at,
                                     coalesce(l.prepay_enabled, sh.prepay_enabled), l.settings_at),
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
