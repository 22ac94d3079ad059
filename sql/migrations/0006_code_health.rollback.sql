-- Rollback of 0006_code_health.
SET LOCAL ROLE flows_owner;

-- ---- natural keys without the tenant again ----
ALTER TABLE flows.properties DROP CONSTRAINT properties_site_plot_key,
    ADD CONSTRAINT properties_site_plot_key UNIQUE (site, plot);
ALTER TABLE flows.circuits DROP CONSTRAINT circuits_site_name_key,
    ADD CONSTRAINT circuits_site_name_key UNIQUE (site, name);
ALTER TABLE flows.circuit_register DROP CONSTRAINT circuit_register_register_time_overlap,
    ADD CONSTRAINT circuit_register_register_time_overlap
        EXCLUDE USING gist (register WITH =, tstzrange(start_time, end_time) WITH &&);
ALTER TABLE flows.properties_service_head DROP CONSTRAINT properties_service_head_pkey,
    ADD PRIMARY KEY (property, service_head);
ALTER TABLE flows.service_head_meter DROP CONSTRAINT service_head_meter_pkey,
    ADD PRIMARY KEY (service_head, meter);
DROP INDEX flows.meter_registers_enabled_element_key;
CREATE UNIQUE INDEX meter_registers_enabled_element_key
    ON flows.meter_registers (meter_id, element) WHERE status = 'enabled';

-- ---- the scheduler and the workers' functions, unversioned again ----
CREATE OR REPLACE FUNCTION flows.run_scheduler_v1() RETURNS jsonb
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    IF NOT pg_catalog.pg_try_advisory_xact_lock(2053, 0) THEN
        RETURN NULL;
    END IF;
    RETURN pg_catalog.jsonb_build_object(
        'estimated_half_hours', flows.estimate_interval_hh(),
        'syncs', flows.schedule_syncs(),
        'tariff_checks', flows.schedule_tariff_checks(),
        'profile_log_reads', flows.schedule_profile_log_reads(),
        'partitions', flows.maintain_partitions());
END
$$;
ALTER FUNCTION flows.run_scheduler_v1() RENAME TO run_scheduler;
DROP FUNCTION flows.meter_command_queue_depth_v1(), flows.last_meter_event_time_v1(uuid);
ALTER FUNCTION flows.release_meter_command_v1(uuid, text, integer) RENAME TO release_meter_command;
ALTER FUNCTION flows.fail_meter_command_v1(uuid, text, integer, text, boolean, interval) RENAME TO fail_meter_command;
ALTER FUNCTION flows.finish_meter_command_v1(uuid, text, integer, jsonb) RENAME TO finish_meter_command;
ALTER FUNCTION flows.note_meter_command_progress_v1(uuid, text, integer, jsonb) RENAME TO note_meter_command_progress;
ALTER FUNCTION flows.renew_meter_command_leases_v1(text, uuid[], integer[], interval)
    RENAME TO renew_meter_command_leases;
DROP FUNCTION flows.claim_meter_commands_v1(text, integer, interval);
CREATE FUNCTION flows.claim_meter_commands(p_worker text, p_limit integer, p_lease interval DEFAULT '2 minutes')
RETURNS TABLE (
    id uuid, kind text, parameters jsonb, attempt smallint, max_attempts smallint, progress jsonb,
    meter_id uuid, serial text, ip_address inet, emop_port integer, hardware text, esco_code text,
    registers jsonb, created_at timestamptz, lease_expires_at timestamptz
)
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    global_limit text := nullif(pg_catalog.current_setting('flows.max_running_commands', true), '');
    global_free bigint;
BEGIN
    IF global_limit !~ '^[0-9]{1,9}$' THEN
        RAISE EXCEPTION 'flows.max_running_commands must be a whole number, got %', global_limit
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pg_catalog.pg_advisory_xact_lock(2052, 0);
    -- A command whose lease ran out after its last attempt had its final
    -- chance (a worker died on it): it fails, saying so.
    UPDATE flows.meter_commands AS c
    SET status = 'failed', lease_owner = NULL, lease_expires_at = NULL, finished_at = pg_catalog.now(),
        last_error = pg_catalog.format('abandoned: the worker''s lease ran out on attempt %s of %s (%s)',
                                       c.attempts, c.max_attempts, coalesce(c.last_error, 'no error recorded'))
    WHERE c.status = 'running' AND c.lease_expires_at < pg_catalog.now() AND c.attempts > c.max_attempts;
    SELECT global_limit::integer - count(*) INTO global_free
    FROM flows.meter_commands AS r WHERE r.status = 'running' AND r.lease_expires_at >= pg_catalog.now();
    IF least(p_limit, global_free) < 1 THEN
        RETURN;
    END IF;
    RETURN QUERY
    WITH due AS (
        SELECT c.id, c.meter_id, c.esco, c.run_at, c.created_at, c.status = 'running' AS orphaned,
               c.kind = 'send_token' AS urgent
        FROM flows.meter_commands AS c
        WHERE (c.status = 'pending' AND c.run_at <= pg_catalog.now())
           OR (c.status = 'running' AND c.lease_expires_at < pg_catalog.now())
        FOR UPDATE OF c SKIP LOCKED
    ),
    busy AS (  -- meters with a live command
        SELECT DISTINCT r.meter_id
        FROM flows.meter_commands AS r
        WHERE r.status = 'running' AND r.lease_expires_at >= pg_catalog.now()
    ),
    room AS (  -- per ESCO, how many more may run
        SELECT e.id AS esco,
               e.max_running_commands - (SELECT count(*) FROM flows.meter_commands AS r
                                         WHERE r.esco = e.id AND r.status = 'running'
                                           AND r.lease_expires_at >= pg_catalog.now()) AS free
        FROM flows.escos AS e
    ),
    one_per_meter AS (  -- a command a dead worker left half done goes first: it may need reconciling
        SELECT DISTINCT ON (d.meter_id) d.id, d.esco, d.urgent, d.run_at, d.created_at
        FROM due AS d
        JOIN flows.meter_registry AS m ON m.id = d.meter_id
        WHERE m.mode = 'active' AND NOT EXISTS (SELECT FROM busy AS b WHERE b.meter_id = d.meter_id)
        ORDER BY d.meter_id, d.orphaned DESC, d.urgent DESC, d.run_at, d.created_at
    ),
    chosen AS (
        SELECT o.id
        FROM (SELECT o.*, row_number() OVER (PARTITION BY o.esco ORDER BY o.urgent DESC, o.run_at, o.created_at) AS n
              FROM one_per_meter AS o) AS o
        JOIN room AS r ON r.esco = o.esco
        WHERE o.n <= r.free
        ORDER BY o.urgent DESC, o.run_at, o.created_at
        LIMIT least(p_limit, global_free)
    )
    UPDATE flows.meter_commands AS c
    SET status = 'running',
        attempts = c.attempts + 1,
        lease_owner = p_worker,
        lease_expires_at = pg_catalog.now() + p_lease,
        started_at = coalesce(c.started_at, pg_catalog.now())
    FROM chosen AS ch, flows.meter_registry AS m, flows.escos AS e
    WHERE c.id = ch.id AND m.id = c.meter_id AND e.id = c.esco
    RETURNING c.id, c.kind, c.parameters, c.attempts, c.max_attempts, c.progress,
              m.id, m.serial, m.ip_address, m.emop_port, m.hardware, e.code,
              (SELECT coalesce(pg_catalog.jsonb_object_agg(r.element, pg_catalog.jsonb_build_object(
                          'register_id', r.register_id, 'direction_reversed', r.direction_reversed)), '{}')
               FROM flows.meter_registers AS r WHERE r.meter_id = m.id AND r.status = 'enabled'),
              c.created_at, c.lease_expires_at;
END
$$;
COMMENT ON FUNCTION flows.claim_meter_commands(text, integer, interval) IS
    'Claims due commands for a worker: one per meter, within ESCO limits; returns how to reach each meter '
    'and its enabled registers ({element: {register_id, direction_reversed}}).';
GRANT EXECUTE ON FUNCTION flows.claim_meter_commands(text, integer, interval) TO flows_service, flows_admin;

-- ---- requests queue their commands themselves again ----
CREATE OR REPLACE FUNCTION api.send_token(
    meter_id        uuid,
    amount          numeric DEFAULT NULL,
    token           text DEFAULT NULL,
    source          text DEFAULT 'payment',
    idempotency_key text DEFAULT NULL
) RETURNS SETOF api.meter_commands
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    target record;
    existing uuid;
    added uuid;
BEGIN
    IF (amount IS NULL) = (token IS NULL) THEN
        RAISE EXCEPTION 'give either amount (GBP, the token is vended) or token (20 digits)'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF amount IS NOT NULL AND (amount < 0.01 OR amount > 1000 OR pg_catalog.scale(amount) > 2) THEN
        RAISE EXCEPTION 'amount must be between 0.01 and 1000 GBP, in pence; got %', amount
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF token IS NOT NULL AND token !~ '^[0-9]{20}$' THEN
        RAISE EXCEPTION 'token must be 20 digits' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF source NOT IN ('payment', 'gift', 'solar_credit', 'adjustment') THEN
        RAISE EXCEPTION 'source must be payment, gift, solar_credit or adjustment; got %', source
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO target FROM flows.meters_to_command(ARRAY[send_token.meter_id], p_prepay => true);
    IF idempotency_key IS NOT NULL THEN  -- the same request again: the same command
        SELECT c.id INTO existing FROM flows.meter_commands AS c
        WHERE c.esco = target.esco AND c.idempotency_key = send_token.idempotency_key;
        IF existing IS NOT NULL THEN
            RETURN QUERY SELECT * FROM api.meter_commands AS c WHERE c.id = existing;
            RETURN;
        END IF;
    END IF;
    INSERT INTO flows.meter_commands (esco, meter_id, kind, parameters, idempotency_key, requested_by, max_attempts)
    VALUES (target.esco, target.meter_id, 'send_token',
            pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
                'amount', amount::text, 'token', token, 'source', source)),
            idempotency_key, flows.requester(), 5)
    RETURNING id INTO added;
    RETURN QUERY SELECT * FROM api.meter_commands AS c WHERE c.id = added;
END
$$;
CREATE OR REPLACE FUNCTION api.read_profile_log(meter_id uuid, start_time timestamptz, end_time timestamptz)
RETURNS SETOF api.meter_commands
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    target record;
    added uuid;
BEGIN
    IF start_time >= end_time OR end_time > pg_catalog.now() + interval '1 hour'
       OR end_time - start_time > interval '31 days' THEN
        RAISE EXCEPTION 'start_time must be before end_time, at most 31 days apart, and not in the future'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO target FROM flows.meters_to_command(ARRAY[read_profile_log.meter_id]);
    INSERT INTO flows.meter_commands (esco, meter_id, kind, parameters, requested_by)
    VALUES (target.esco, target.meter_id, 'read_profile_log',
            pg_catalog.jsonb_build_object('from', start_time, 'to', end_time), flows.requester())
    RETURNING id INTO added;
    RETURN QUERY SELECT * FROM api.meter_commands AS c WHERE c.id = added;
END
$$;
CREATE OR REPLACE FUNCTION api.set_clock(meter_id uuid) RETURNS SETOF api.meter_commands
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    target record;
    added uuid;
BEGIN
    SELECT * INTO target FROM flows.meters_to_command(ARRAY[set_clock.meter_id]);
    INSERT INTO flows.meter_commands (esco, meter_id, kind, requested_by)
    VALUES (target.esco, target.meter_id, 'set_clock', flows.requester())
    RETURNING id INTO added;
    RETURN QUERY SELECT * FROM api.meter_commands AS c WHERE c.id = added;
END
$$;
DROP FUNCTION flows.queue_meter_command(uuid, text, jsonb, boolean, text);

-- ---- meter states as before ----
CREATE OR REPLACE FUNCTION flows.record_meter_states(p_states jsonb) RETURNS integer
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
DROP FUNCTION flows.newer(anyelement, timestamptz, anyelement, timestamptz);
DROP FUNCTION flows.meter_state_rows(jsonb);
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
GRANT EXECUTE ON FUNCTION flows.meter_state_rows(jsonb) TO flows_service, flows_admin;
DROP TYPE flows.meter_state;
CREATE OR REPLACE FUNCTION flows.lock_known_registers(p_register_ids uuid[]) RETURNS void
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

-- ---- hardware kinds ----
CREATE OR REPLACE FUNCTION flows.is_three_phase(m flows.meter_registry) RETURNS boolean
LANGUAGE sql IMMUTABLE
SET search_path = ''
RETURN m.serial LIKE 'EMP1%' OR m.hardware IN ('P1.ax', 'P1.cx');
DROP TABLE flows.hardware_kinds;

-- ---- api.escos without max_running_commands (a view cannot lose a column in place) ----
DROP VIEW api.escos;
CREATE VIEW api.escos WITH (security_invoker = true) AS
SELECT id, code, name, low_balance_threshold, created_at
FROM flows.escos;
COMMENT ON VIEW api.escos IS 'Energy service companies (ESCOs). Operators see their own; admins all.';
COMMENT ON COLUMN api.escos.code IS 'Short unique code, e.g. WLCE; the "esco" claim of JWTs.';
COMMENT ON COLUMN api.escos.low_balance_threshold IS 'GBP; meters_low_balance lists prepay meters below it.';
GRANT SELECT ON api.escos TO flows_operator, flows_analyst, flows_service, flows_customer;
GRANT UPDATE (name, low_balance_threshold) ON api.escos TO flows_operator;
GRANT SELECT, INSERT, UPDATE, DELETE ON api.escos TO flows_admin;

-- ---- the advisory-lock registry ----
DROP FUNCTION flows.lock_key(text);
