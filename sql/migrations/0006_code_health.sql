-- 0006_code_health: one concept in one place, and a versioned contract with the workers.
--   * an advisory-lock registry (flows.lock_key) used by every lock;
--   * max_running_commands shown on api.escos;
--   * flows.hardware_kinds, the one description of meter models; is_three_phase reads it
--     (an EMP1AX... meter with no hardware recorded is three phase everywhere);
--   * meter states typed once (flows.meter_state), the shadow update's rule once (flows.newer);
--   * the functions a running worker calls versioned (_v1), plus the two queries it
--     assembled itself (queue depth, last event time) as named functions;
--   * one way to queue a command for one meter (flows.queue_meter_command), used by
--     send_token, read_profile_log and set_clock;
--   * the ESCO in every natural key of topology rows (no existence oracle across ESCOs).
-- Moving max_running_commands, reads_to_estimate and flows.requester between source
-- files changes nothing in the database.
-- Deploy: the worker functions are renamed here, so workers of an earlier release fail
-- their calls until restarted (their commands' leases run out and new workers take them);
-- restart the workers with this migration. Later changes add _v2 beside _v1 instead.

-- Everything below is created by, and owned by, flows_owner.
SET LOCAL ROLE flows_owner;

-- ---- schema/advisory_locks.sql ----
-- Every advisory lock the database takes, in one registry, so that no two
-- uses ever share a key by accident. Locks are transaction-scoped
-- (pg_advisory_xact_lock) and use the two-key form: the first key names the
-- use (below), the second narrows it (0 when the use is one lock).
--
--   name             key   second key              taken by                      so that
--   register_writes  2051  hashtext(register id)   flows.lock_known_registers    writers of the same registers'
--                                                  (every reading writer)        half hours take turns (exact rollups)
--   command_claims   2052  0                       flows.claim_meter_commands_v1 claims are serialised: per-meter,
--                                                                                per-ESCO and global limits are exact
--   scheduler        2053  0 (try: never waits)    flows.run_scheduler_v1        one scheduler pass at a time
--
-- The one-key (bigint) form is left to table oids: flows.ensure_partitions
-- locks the table it adds a partition to.
--
-- To add a lock: a name and the next free key here, then call
-- pg_advisory_xact_lock(flows.lock_key('name'), ...). The key is folded into a
-- constant when the calling statement is planned (the function is IMMUTABLE),
-- so naming it costs nothing at run time.
CREATE FUNCTION flows.lock_key(p_name text) RETURNS integer
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = ''
AS $$
DECLARE
    key integer := CASE p_name
        WHEN 'register_writes' THEN 2051
        WHEN 'command_claims' THEN 2052
        WHEN 'scheduler' THEN 2053
    END;
BEGIN
    IF key IS NULL THEN
        RAISE EXCEPTION 'no advisory lock named %', coalesce(pg_catalog.quote_literal(p_name), 'null')
            USING ERRCODE = 'invalid_parameter_value', HINT = 'add it to sql/schema/advisory_locks.sql';
    END IF;
    RETURN key;
END
$$;
COMMENT ON FUNCTION flows.lock_key(text) IS
    'The first key of a named advisory lock (registry: sql/schema/advisory_locks.sql); raises for an unknown name.';

-- ---- rpc/escos.sql: max_running_commands shown ----
CREATE OR REPLACE VIEW api.escos WITH (security_invoker = true) AS
SELECT id, code, name, low_balance_threshold, created_at, max_running_commands
FROM flows.escos;
COMMENT ON COLUMN api.escos.max_running_commands IS
    'How many of this ESCO''s meter commands may run at once across all workers (1-10000, default 50); admins set it.';

-- ---- schema/hardware_kinds.sql ----
-- Kinds of Emlite meter hardware: the one description of what each model is.
-- Everything that needs to know whether a meter is three phase, twin element or
-- able to prepay reads it here (flows.is_three_phase, the claim that hands
-- commands to workers); the EMOP client, which has no database, carries a copy
-- in workers/flows/emop/values.py (HARDWARE_KINDS) that tests/worker/test_contract.py
-- holds equal to these rows. Changed by migrations only, like the EMOP protocol.
CREATE TABLE flows.hardware_kinds (
    model          text     PRIMARY KEY,
    phases         smallint NOT NULL,
    elements       smallint NOT NULL,
    prepay_capable boolean  NOT NULL,
    serial_prefix  text,
    version_texts  text[]   NOT NULL DEFAULT '{}',
    description    text     NOT NULL,
    CONSTRAINT hardware_kinds_phases_valid CHECK (phases IN (1, 3)),
    CONSTRAINT hardware_kinds_elements_valid CHECK (elements IN (1, 2)),
    CONSTRAINT hardware_kinds_serial_prefix_key UNIQUE (serial_prefix)
);
COMMENT ON TABLE flows.hardware_kinds IS
    'Emlite meter models (meter_registry.hardware): phases, metering elements, prepayment. Mirrored in emop/values.py.';
COMMENT ON COLUMN flows.hardware_kinds.elements IS
    'Metering elements read separately: 2 = A and B (twin element); three-phase meters report totals as element A.';
COMMENT ON COLUMN flows.hardware_kinds.serial_prefix IS
    'Serials that name the model without asking the meter (EMP1AX...); single-phase models share EML.';
COMMENT ON COLUMN flows.hardware_kinds.version_texts IS
    'What the meter''s hardware_version object says for this model (three-phase meters have none).';

INSERT INTO flows.hardware_kinds (model, phases, elements, prepay_capable, serial_prefix, version_texts, description)
VALUES
    ('C1.w',   1, 2, true,  NULL,     '{6C,6Cw}', 'single phase, twin element (A and B)'),
    ('B1.w',   1, 1, true,  NULL,     '{6Bw}',    'single phase, single element'),
    ('EMA1.w', 1, 1, true,  NULL,     '{3Aw}',    'single phase, single element'),
    ('SINGLE_PHASE_UNKNOWN', 1, 1, true, NULL, '{}', 'single phase, hardware_version not recognised: read as one element'),
    ('P1.ax',  3, 1, false, 'EMP1AX', '{}',       'three phase, whole current; no prepayment, tariffs or profile log 1'),
    ('P1.cx',  3, 1, false, 'EMP1CX', '{}',       'three phase, CT operated; no prepayment, tariffs or profile log 1');

-- ---- schema/meters.sql: is_three_phase reads hardware_kinds ----
CREATE OR REPLACE FUNCTION flows.is_three_phase(m flows.meter_registry) RETURNS boolean
LANGUAGE sql STABLE
SET search_path = ''
RETURN EXISTS (SELECT FROM flows.hardware_kinds AS k
               WHERE k.phases = 3 AND (k.model = m.hardware OR pg_catalog.starts_with(m.serial, k.serial_prefix)));

-- ---- schema/recording/guards.sql: the registered lock key ----
CREATE OR REPLACE FUNCTION flows.lock_known_registers(p_register_ids uuid[]) RETURNS void
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

-- ---- schema/recording/meter_states.sql: the state type, the shadow rule ----
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
DROP FUNCTION flows.meter_state_rows(jsonb);
CREATE FUNCTION flows.meter_state_rows(p_states jsonb) RETURNS SETOF flows.meter_state
LANGUAGE sql IMMUTABLE
AS $$
    SELECT * FROM pg_catalog.jsonb_populate_recordset(NULL::flows.meter_state, p_states)
$$;
CREATE FUNCTION flows.newer(p_held anyelement, p_held_at timestamptz, p_seen anyelement, p_seen_at timestamptz)
RETURNS anyelement
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN p_seen_at >= coalesce(p_held_at, '-infinity') THEN p_seen ELSE p_held END
$$;
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

-- ---- schema/recording/meter_events.sql: where the event log resumes ----
CREATE FUNCTION flows.last_meter_event_time_v1(p_meter_id uuid) RETURNS timestamptz
LANGUAGE sql STABLE
SET search_path = ''
BEGIN ATOMIC
    SELECT max(e."timestamp") FROM flows.meter_event_log AS e WHERE e.meter_id = p_meter_id;
END;

-- ---- schema/commands.sql: versioned for the workers ----
DROP FUNCTION flows.claim_meter_commands(text, integer, interval);
CREATE FUNCTION flows.claim_meter_commands_v1(p_worker text, p_limit integer, p_lease interval DEFAULT '2 minutes')
RETURNS TABLE (
    id uuid, kind text, parameters jsonb, attempt smallint, max_attempts smallint, progress jsonb,
    meter_id uuid, serial text, ip_address inet, emop_port integer, hardware text, three_phase boolean,
    esco_code text, registers jsonb, created_at timestamptz, lease_expires_at timestamptz
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
    PERFORM pg_catalog.pg_advisory_xact_lock(flows.lock_key('command_claims'), 0);
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
              m.id, m.serial, m.ip_address, m.emop_port, m.hardware, flows.is_three_phase(m), e.code,
              (SELECT coalesce(pg_catalog.jsonb_object_agg(r.element, pg_catalog.jsonb_build_object(
                          'register_id', r.register_id, 'direction_reversed', r.direction_reversed)), '{}')
               FROM flows.meter_registers AS r WHERE r.meter_id = m.id AND r.status = 'enabled'),
              c.created_at, c.lease_expires_at;
END
$$;
COMMENT ON FUNCTION flows.claim_meter_commands_v1(text, integer, interval) IS
    'Claims due commands for a worker: one per meter, within ESCO limits; returns how to reach each meter, '
    'whether it is three phase, and its enabled registers ({element: {register_id, direction_reversed}}).';
ALTER FUNCTION flows.renew_meter_command_leases(text, uuid[], integer[], interval)
    RENAME TO renew_meter_command_leases_v1;
ALTER FUNCTION flows.note_meter_command_progress(uuid, text, integer, jsonb) RENAME TO note_meter_command_progress_v1;
ALTER FUNCTION flows.finish_meter_command(uuid, text, integer, jsonb) RENAME TO finish_meter_command_v1;
ALTER FUNCTION flows.fail_meter_command(uuid, text, integer, text, boolean, interval) RENAME TO fail_meter_command_v1;
ALTER FUNCTION flows.release_meter_command(uuid, text, integer) RENAME TO release_meter_command_v1;
CREATE FUNCTION flows.meter_command_queue_depth_v1(OUT pending bigint, OUT running bigint)
LANGUAGE sql STABLE
SET search_path = ''
BEGIN ATOMIC
    SELECT count(*) FILTER (WHERE c.status = 'pending'), count(*) FILTER (WHERE c.status = 'running')
    FROM flows.meter_commands AS c
    WHERE c.status IN ('pending', 'running');
END;

-- ---- schema/scheduling.sql: versioned, the registered lock key ----
ALTER FUNCTION flows.run_scheduler() RENAME TO run_scheduler_v1;
CREATE OR REPLACE FUNCTION flows.run_scheduler_v1() RETURNS jsonb
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    IF NOT pg_catalog.pg_try_advisory_xact_lock(flows.lock_key('scheduler'), 0) THEN
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

-- ---- rpc/commands.sql: one way to queue a command for a meter ----
CREATE FUNCTION flows.queue_meter_command(p_meter_id uuid, p_kind text, p_parameters jsonb DEFAULT '{}',
                                          p_prepay boolean DEFAULT false, p_idempotency_key text DEFAULT NULL)
RETURNS SETOF api.meter_commands
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    target record;
    command_id uuid;
BEGIN
    SELECT * INTO target FROM flows.meters_to_command(ARRAY[p_meter_id], p_prepay);
    IF p_idempotency_key IS NOT NULL THEN  -- the same request again: the same command
        SELECT c.id INTO command_id FROM flows.meter_commands AS c
        WHERE c.esco = target.esco AND c.idempotency_key = p_idempotency_key;
    END IF;
    IF command_id IS NULL THEN
        INSERT INTO flows.meter_commands (esco, meter_id, kind, parameters, idempotency_key, requested_by)
        VALUES (target.esco, target.meter_id, p_kind, p_parameters, p_idempotency_key, flows.requester())
        RETURNING id INTO command_id;
    END IF;
    RETURN QUERY SELECT * FROM api.meter_commands AS c WHERE c.id = command_id;
END
$$;
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
    RETURN QUERY SELECT * FROM flows.queue_meter_command(
        send_token.meter_id, 'send_token',
        pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
            'amount', amount::text, 'token', token, 'source', source)),
        p_prepay => true, p_idempotency_key => send_token.idempotency_key);
END
$$;
CREATE OR REPLACE FUNCTION api.read_profile_log(meter_id uuid, start_time timestamptz, end_time timestamptz)
RETURNS SETOF api.meter_commands
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    IF start_time >= end_time OR end_time > pg_catalog.now() + interval '1 hour'
       OR end_time - start_time > interval '31 days' THEN
        RAISE EXCEPTION 'start_time must be before end_time, at most 31 days apart, and not in the future'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY SELECT * FROM flows.queue_meter_command(
        read_profile_log.meter_id, 'read_profile_log', pg_catalog.jsonb_build_object('from', start_time, 'to', end_time));
END
$$;
CREATE OR REPLACE FUNCTION api.set_clock(meter_id uuid) RETURNS SETOF api.meter_commands
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    RETURN QUERY SELECT * FROM flows.queue_meter_command(set_clock.meter_id, 'set_clock');
END
$$;

-- ---- rls/privileges.sql ----
GRANT EXECUTE ON FUNCTION flows.lock_key(text) TO flows_service, flows_admin;
GRANT SELECT ON flows.hardware_kinds TO flows_admin, flows_operator, flows_analyst, flows_service, flows_customer;
GRANT EXECUTE ON FUNCTION
    flows.meter_state_rows(jsonb),
    flows.newer(anyelement, timestamptz, anyelement, timestamptz)
TO flows_service, flows_admin;
GRANT EXECUTE ON FUNCTION
    flows.claim_meter_commands_v1(text, integer, interval),
    flows.meter_command_queue_depth_v1(),
    flows.last_meter_event_time_v1(uuid)
TO flows_service, flows_admin;
GRANT EXECUTE ON FUNCTION flows.queue_meter_command(uuid, text, jsonb, boolean, text) TO flows_admin, flows_operator;

-- ---- rls/policies.sql ----
ALTER TABLE flows.hardware_kinds ENABLE ROW LEVEL SECURITY;
CREATE POLICY hardware_kinds_read ON flows.hardware_kinds FOR SELECT
    TO flows_admin, flows_operator, flows_analyst, flows_service, flows_customer
    USING (true);

-- ---- tenant in every natural key ----
-- A unique key without the ESCO is checked before the composite foreign key, so an
-- operator's insert naming another ESCO's parent row failed as a duplicate where that
-- ESCO had such a child and as a missing parent otherwise: an existence oracle. With the
-- ESCO in the key (the composite foreign key makes it the parent's ESCO anyway, so what
-- is unique does not change) every such insert fails on the foreign key alike.
ALTER TABLE flows.properties DROP CONSTRAINT properties_site_plot_key,
    ADD CONSTRAINT properties_site_plot_key UNIQUE (site, plot, esco);
ALTER TABLE flows.circuits DROP CONSTRAINT circuits_site_name_key,
    ADD CONSTRAINT circuits_site_name_key UNIQUE (site, name, esco);
ALTER TABLE flows.circuit_register DROP CONSTRAINT circuit_register_register_time_overlap,
    ADD CONSTRAINT circuit_register_register_time_overlap
        EXCLUDE USING gist (register WITH =, esco WITH =, tstzrange(start_time, end_time) WITH &&);
ALTER TABLE flows.properties_service_head DROP CONSTRAINT properties_service_head_pkey,
    ADD PRIMARY KEY (property, service_head, esco);
ALTER TABLE flows.service_head_meter DROP CONSTRAINT service_head_meter_pkey,
    ADD PRIMARY KEY (service_head, meter, esco);
DROP INDEX flows.meter_registers_enabled_element_key;
CREATE UNIQUE INDEX meter_registers_enabled_element_key
    ON flows.meter_registers (meter_id, element, esco) WHERE status = 'enabled';
