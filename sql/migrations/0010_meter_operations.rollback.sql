-- Rollback of 0010_meter_operations.
SET LOCAL ROLE flows_owner;

-- ---- api ----
DROP FUNCTION api.drain_worker(uuid);
DROP VIEW api.workers;
COMMENT ON COLUMN api.meter_commands.kind IS 'sync, send_token, set_future_tariff, read_profile_log or set_clock.';
CREATE OR REPLACE FUNCTION api.request_sync(meter_ids uuid[] DEFAULT NULL, metrics text[] DEFAULT NULL)
RETURNS SETOF api.meter_commands
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    unknown text;
    ids uuid[];
BEGIN
    SELECT string_agg(x, ', ') INTO unknown FROM unnest(metrics) AS x
    WHERE NOT EXISTS (SELECT FROM flows.meter_metrics AS m WHERE m.name = x);
    IF unknown IS NOT NULL THEN
        RAISE EXCEPTION 'unknown metric %', unknown USING ERRCODE = 'invalid_parameter_value',
            HINT = (SELECT 'metrics: ' || string_agg(m.name, ', ' ORDER BY m.name) FROM flows.meter_metrics AS m);
    END IF;
    WITH added AS (
        INSERT INTO flows.meter_commands (esco, meter_id, kind, parameters, requested_by)
        SELECT t.esco, t.meter_id, 'sync',
               pg_catalog.jsonb_build_object('metrics', pg_catalog.to_jsonb(coalesce(metrics, ARRAY(
                   SELECT m.name FROM flows.meter_metrics AS m WHERE m.enabled ORDER BY m.name)))),
               flows.requester()
        FROM flows.meters_to_command(meter_ids) AS t
        RETURNING id
    )
    SELECT array_agg(id) INTO ids FROM added;
    RETURN QUERY SELECT * FROM api.meter_commands AS c WHERE c.id = ANY (ids);
END
$$;
CREATE OR REPLACE FUNCTION api.set_future_tariff(tariff jsonb, meter_ids uuid[] DEFAULT NULL, whole_esco boolean DEFAULT false)
RETURNS SETOF api.meter_commands
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    batch uuid := CASE WHEN whole_esco OR pg_catalog.cardinality(meter_ids) > 1 THEN gen_random_uuid() END;
    ids uuid[];
BEGIN
    IF (meter_ids IS NULL) = (NOT whole_esco) THEN
        RAISE EXCEPTION 'give meter_ids, or whole_esco true (every active prepay meter of your ESCO)'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM flows.tariff_is_valid(tariff, true);
    IF EXISTS (SELECT FROM unnest(ARRAY['standing_charge', 'unit_rate_element_a', 'prepayment_emergency_credit',
                                        'prepayment_ecredit_availability', 'prepayment_debt_recovery_rate']) AS k
               WHERE NOT tariff ? k) THEN
        RAISE EXCEPTION 'a future tariff for a meter needs standing_charge, unit_rate_element_a, '
                        'prepayment_emergency_credit, prepayment_ecredit_availability, '
                        'prepayment_debt_recovery_rate and activation_datetime (unit_rate_element_b defaults to a)'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF (tariff ->> 'activation_datetime')::timestamptz <= pg_catalog.now() THEN
        RAISE EXCEPTION 'future tariff activation_datetime must be in the future'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF whole_esco AND flows.current_esco_id() IS NULL THEN
        RAISE EXCEPTION 'whole_esco needs a token for one ESCO (the esco claim)' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    WITH added AS (
        INSERT INTO flows.meter_commands (esco, meter_id, kind, parameters, batch_id, requested_by)
        SELECT t.esco, t.meter_id, 'set_future_tariff', pg_catalog.jsonb_build_object('tariff', tariff), batch,
               flows.requester()
        FROM flows.meters_to_command(meter_ids, p_prepay => true) AS t
        WHERE NOT whole_esco OR t.esco = flows.current_esco_id()
        RETURNING id
    )
    SELECT array_agg(id) INTO ids FROM added;
    RETURN QUERY SELECT * FROM api.meter_commands AS c WHERE c.id = ANY (ids);
END
$$;

-- ---- scheduling ----
CREATE OR REPLACE FUNCTION flows.schedule_profile_log_reads(p_days integer DEFAULT 7) RETURNS integer
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    queued integer;
BEGIN
    WITH gaps AS (
        SELECT r.meter_id, g.day
        FROM flows.meter_registers AS r
        JOIN flows.meter_registry AS m ON m.id = r.meter_id
        CROSS JOIN LATERAL (
            SELECT d::date AS day FROM generate_series(
                greatest(flows.uk_day(pg_catalog.now()) - p_days, flows.uk_day(r.start_time))::timestamp,
                (flows.uk_day(pg_catalog.now()) - 1)::timestamp, interval '1 day') AS d) AS g
        LEFT JOIN flows.register_interval_daily AS d ON d.register_id = r.register_id AND d.day = g.day
        WHERE m.mode = 'active' AND r.status = 'enabled' AND NOT flows.is_three_phase(m)
          AND (d.register_id IS NULL
               OR d.intervals - d.estimated
                  < extract(epoch FROM flows.uk_day_start(g.day + 1) - flows.uk_day_start(g.day)) / 1800)
    ),
    per_meter AS (
        SELECT g.meter_id, min(g.day) AS first_day, max(g.day) AS last_day
        FROM gaps AS g
        WHERE NOT EXISTS (  -- one read per gap day once it is over; a failed one is retried after 6 hours
            SELECT FROM flows.meter_commands AS c
            WHERE c.meter_id = g.meter_id AND c.kind = 'read_profile_log'
              AND (c.status IN ('pending', 'running')
                   OR (c.created_at >= flows.uk_day_start(g.day + 1) AND c.status = 'done')
                   OR (c.created_at >= pg_catalog.now() - interval '6 hours' AND c.status = 'failed')))
        GROUP BY g.meter_id
    )
    INSERT INTO flows.meter_commands (esco, meter_id, kind, parameters, requested_by)
    SELECT m.esco, p.meter_id, 'read_profile_log',
           pg_catalog.jsonb_build_object('from', flows.uk_day_start(p.first_day),
                                         'to', flows.uk_day_start(p.last_day + 1)),
           'scheduler'
    FROM per_meter AS p
    JOIN flows.meter_registry AS m ON m.id = p.meter_id;
    GET DIAGNOSTICS queued = ROW_COUNT;
    RETURN queued;
END
$$;
DROP FUNCTION flows.note_metrics_synced(uuid[], jsonb[]);
CREATE FUNCTION flows.note_metrics_synced(p_meter_id uuid, p_metrics jsonb) RETURNS void
LANGUAGE sql
SET search_path = ''
BEGIN ATOMIC
    INSERT INTO flows.meter_metric_runs AS r (meter_id, metric, last_synced_at)
    SELECT p_meter_id, m.name, pg_catalog.now()
    FROM flows.meter_metrics AS m
    WHERE p_metrics IS NULL OR p_metrics = 'null' OR p_metrics ? m.name
    ON CONFLICT (meter_id, metric) DO UPDATE SET last_synced_at = excluded.last_synced_at;
END;
GRANT EXECUTE ON FUNCTION flows.note_metrics_synced(uuid, jsonb) TO flows_service, flows_admin;

-- ---- emop sessions (their audit rows go: the old kinds check refuses them) ----
DROP FUNCTION flows.open_emop_session(text, text, text), flows.hold_emop_session(uuid, text, interval),
    flows.close_emop_session(uuid, text, text);
DELETE FROM flows.meter_commands WHERE kind = 'emop_session';

-- ---- commands ----
CREATE OR REPLACE FUNCTION flows.release_meter_command_v1(p_id uuid, p_worker text, p_attempt integer)
RETURNS void
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    PERFORM flows.fence_meter_command(p_id, p_worker, p_attempt);
    UPDATE flows.meter_commands AS c
    SET status = 'pending', attempts = c.attempts - 1, lease_owner = NULL, lease_expires_at = NULL
    WHERE c.id = p_id;
END
$$;
DROP FUNCTION flows.step_meter_command_v1(uuid, text, integer, jsonb, jsonb, boolean),
    flows.hand_back_meter_command(uuid), flows.commands_waited_for_v1(text),
    flows.command_waiting_before(flows.meter_commands), flows.goes_before(flows.meter_commands, text);
CREATE OR REPLACE FUNCTION flows.finish_meter_command_v1(p_id uuid, p_worker text, p_attempt integer, p_outcome jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    command flows.meter_commands;
    intervals jsonb := p_outcome -> 'intervals';
    events jsonb := p_outcome -> 'events';
    states jsonb := coalesce(p_outcome -> 'states', '[]');
BEGIN
    command := flows.fence_meter_command(p_id, p_worker, p_attempt);
    IF intervals IS NOT NULL THEN
        PERFORM flows.record_interval_hh(
            ARRAY(SELECT pg_catalog.jsonb_array_elements_text(intervals -> 'register_ids'))::uuid[],
            ARRAY(SELECT pg_catalog.jsonb_array_elements_text(intervals -> 'timestamps'))::timestamptz[],
            ARRAY(SELECT pg_catalog.jsonb_array_elements_text(intervals -> 'import_kwh'))::numeric[],
            ARRAY(SELECT pg_catalog.jsonb_array_elements_text(intervals -> 'export_kwh'))::numeric[],
            coalesce(intervals ->> 'source', 'profile_log'));
    END IF;
    IF events IS NOT NULL THEN
        PERFORM flows.record_meter_events(
            command.meter_id,
            ARRAY(SELECT pg_catalog.jsonb_array_elements_text(events -> 'timestamps'))::timestamptz[],
            ARRAY(SELECT pg_catalog.jsonb_array_elements_text(events -> 'event_types'))::integer[],
            ARRAY(SELECT pg_catalog.jsonb_array_elements_text(events -> 'event_sets'))::integer[]);
    END IF;
    IF p_outcome ? 'meter' THEN
        UPDATE flows.meter_registry AS m
        SET hardware = coalesce(p_outcome -> 'meter' ->> 'hardware', m.hardware),
            firmware_version = coalesce(p_outcome -> 'meter' ->> 'firmware_version', m.firmware_version)
        WHERE m.id = command.meter_id;
    END IF;
    -- Contact succeeded: the meter is healthy (as of the last state observed, else now).
    IF pg_catalog.jsonb_array_length(states) > 0 AND (states -> -1 ->> 'meter_id')::uuid = command.meter_id THEN
        states := pg_catalog.jsonb_set(states, '{-1,health}', '"healthy"');
    ELSE
        states := states || pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object(
            'meter_id', command.meter_id, 'observed_at', pg_catalog.now(), 'health', 'healthy'));
    END IF;
    PERFORM flows.record_meter_states(states);
    UPDATE flows.meter_commands AS c
    SET status = 'done', result = coalesce(p_outcome -> 'result', '{}'), last_error = NULL,
        lease_owner = NULL, lease_expires_at = NULL, finished_at = pg_catalog.now()
    WHERE c.id = p_id;
    IF command.kind = 'sync' THEN
        PERFORM flows.note_metrics_synced(command.meter_id, command.parameters -> 'metrics');
    END IF;
END
$$;
DROP FUNCTION flows.finish_meter_commands_v1(text, jsonb), flows.notify_due_meter_commands(uuid[]),
    flows.record_command_outcomes(uuid[], jsonb[], boolean);
CREATE OR REPLACE FUNCTION flows.claim_meter_commands_v1(p_worker text, p_limit integer, p_lease interval DEFAULT '2 minutes')
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
DROP INDEX flows.meter_commands_first_idx;
DROP FUNCTION flows.claim_meter_commands_v2(text, integer, interval), flows.expire_meter_commands(),
    flows.emop_session_patience(), flows.command_priority(text);
DROP INDEX flows.meter_commands_emop_session_idx;
ALTER TABLE flows.meter_commands DROP CONSTRAINT meter_commands_kind_valid;
ALTER TABLE flows.meter_commands ADD CONSTRAINT meter_commands_kind_valid
    CHECK (kind IN ('sync', 'send_token', 'set_future_tariff', 'read_profile_log', 'set_clock'));

-- ---- workers ----
DROP FUNCTION flows.worker_stopped_v1(text, bigint), flows.worker_heartbeat_v1(text, integer, bigint),
    flows.register_worker_v1(text, text, integer, text, integer, text[], interval),
    flows.worker_state(flows.workers);
DROP TABLE flows.workers;

-- ---- timeseries ----
CREATE OR REPLACE FUNCTION flows.ensure_partitions(p_table regclass, p_from timestamptz, p_to timestamptz)
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
    table_name name;
    month timestamp;
    last_month timestamp := pg_catalog.date_trunc('month', p_to AT TIME ZONE 'UTC');
    partition_name text;
    created integer := 0;
BEGIN
    SELECT c.relname INTO table_name
    FROM pg_catalog.pg_class AS c
    JOIN pg_catalog.pg_partitioned_table AS p ON p.partrelid = c.oid
    WHERE c.oid = p_table AND c.relnamespace = 'flows'::regnamespace;
    IF table_name IS NULL THEN
        RETURN 0;  -- not a partitioned flows table (e.g. a TimescaleDB hypertable makes its own chunks)
    END IF;
    IF p_to < p_from OR p_to - p_from > interval '25 months' THEN
        RAISE EXCEPTION 'partition range % to % is not plausible', p_from, p_to
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    month := pg_catalog.date_trunc('month', p_from AT TIME ZONE 'UTC');
    WHILE month <= last_month LOOP
        partition_name := table_name || '_p' || pg_catalog.to_char(month, 'YYYY_MM');
        IF pg_catalog.to_regclass('flows.' || pg_catalog.quote_ident(partition_name)) IS NULL THEN
            PERFORM pg_catalog.pg_advisory_xact_lock(p_table::oid::bigint);
            IF pg_catalog.to_regclass('flows.' || pg_catalog.quote_ident(partition_name)) IS NULL THEN
                EXECUTE pg_catalog.format(
                    'CREATE TABLE flows.%I PARTITION OF flows.%I FOR VALUES FROM (%L) TO (%L)',
                    partition_name, table_name,
                    month AT TIME ZONE 'UTC', (month + interval '1 month') AT TIME ZONE 'UTC');
                created := created + 1;
            END IF;
        END IF;
        month := month + interval '1 month';
    END LOOP;
    RETURN created;
END
$$;
