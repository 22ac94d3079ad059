-- 0010_meter_operations: meter operations under real conditions (issue 14).
--   * top-ups first, always: long work (profile-log backfills, event-log reads, tariff writes) runs in
--     steps (flows.step_meter_command_v1) and hands its meter to a top-up or an operator waiting for it;
--     commands go first by flows.command_priority;
--   * many commands finished in one call (flows.finish_meter_commands_v1; finish_meter_command_v1
--     becomes one of them), waking the workers for what waited on the meters; release wakes them too;
--   * workers register, beat and stop (flows.workers, register_worker_v1, worker_heartbeat_v1,
--     worker_stopped_v1); administrators list and drain them (api.workers, api.drain_worker); a worker
--     may serve some ESCOs only (claim_meter_commands_v2; _v1 claims as an unregistered worker);
--   * operators' emop sessions under the per-meter lease (kind emop_session, flows.open/hold/
--     close_emop_session), never run by a worker;
--   * gap repair (schedule_profile_log_reads) covers three-phase meters;
--   * ensure_partitions is safe when sessions create the same new partition at once (concurrent
--     backfills into a past month failed with "relation ... already exists").
-- Deploy: workers of the earlier release keep working (every _v1 function they call stays, with the
-- same contract; claim_meter_commands_v1 never hands them an emop session); restart them onto this
-- release to get steps, registration and batch finishing. Until then, an old worker refuses the
-- three-phase profile-log reads gap repair now queues (failed; queued again 6 hours later).

-- Everything below is created by, and owned by, flows_owner.
SET LOCAL ROLE flows_owner;

-- ---- schema/workers.sql ----
CREATE TABLE flows.workers (
    id                  uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    name                text        NOT NULL UNIQUE,
    host                text        NOT NULL,
    pid                 integer     NOT NULL,
    version             text        NOT NULL,
    concurrency         integer     NOT NULL,
    escos               uuid[],
    heartbeat_interval  interval    NOT NULL,
    started_at          timestamptz NOT NULL DEFAULT now(),
    heartbeat_at        timestamptz NOT NULL DEFAULT now(),
    in_flight           integer     NOT NULL DEFAULT 0,
    commands_finished   bigint      NOT NULL DEFAULT 0,
    commands_per_minute numeric     NOT NULL DEFAULT 0,
    drain_requested_at  timestamptz,
    drain_requested_by  text,
    stopped_at          timestamptz,
    CONSTRAINT workers_concurrency_positive CHECK (concurrency > 0),
    CONSTRAINT workers_escos_named CHECK (cardinality(escos) > 0),
    CONSTRAINT workers_heartbeat_positive CHECK (heartbeat_interval > interval '0')
);
COMMENT ON TABLE flows.workers IS
    'Worker processes: where they run, what they serve (escos; null: every ESCO), how busy they are, and drains.';
COMMENT ON COLUMN flows.workers.escos IS 'The ESCOs whose commands the worker claims; null: every ESCO.';
COMMENT ON COLUMN flows.workers.commands_per_minute IS
    'Commands finished (done, failed or retried) per minute, smoothed over about a minute of heartbeats.';

-- What a worker is doing: running, draining (asked to stop), stopped, or lost
-- (no heartbeat for three intervals: it died; its leases run out).
CREATE FUNCTION flows.worker_state(w flows.workers) RETURNS text
LANGUAGE sql STABLE
SET search_path = ''
RETURN CASE
    WHEN w.stopped_at IS NOT NULL THEN 'stopped'
    WHEN w.heartbeat_at < pg_catalog.now() - 3 * w.heartbeat_interval THEN 'lost'
    WHEN w.drain_requested_at IS NOT NULL THEN 'draining'
    ELSE 'running'
END;

-- A worker starting: registers (or re-registers) under its name, serving the
-- ESCOs named by code (null: every ESCO). Workers stopped or lost a week ago
-- are forgotten. Returns the worker's id.
CREATE FUNCTION flows.register_worker_v1(p_worker text, p_host text, p_pid integer, p_version text,
                                         p_concurrency integer, p_escos text[], p_heartbeat interval)
RETURNS uuid
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    unknown text;
    served uuid[];
    worker_id uuid;
BEGIN
    IF p_escos IS NOT NULL THEN
        SELECT string_agg(x.code, ', ' ORDER BY x.code) FILTER (WHERE e.id IS NULL), array_agg(e.id ORDER BY e.code)
        INTO unknown, served
        FROM unnest(p_escos) AS x (code) LEFT JOIN flows.escos AS e ON e.code = x.code;
        IF unknown IS NOT NULL OR cardinality(p_escos) = 0 THEN
            RAISE EXCEPTION 'a worker serves ESCOs that exist; unknown ESCO code %', coalesce(unknown, '(none given)')
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = (SELECT 'ESCO codes: ' || string_agg(e.code, ', ' ORDER BY e.code) FROM flows.escos AS e);
        END IF;
    END IF;
    DELETE FROM flows.workers AS w
    WHERE flows.worker_state(w) IN ('stopped', 'lost')
      AND greatest(w.stopped_at, w.heartbeat_at) < pg_catalog.now() - interval '7 days';
    INSERT INTO flows.workers AS w (name, host, pid, version, concurrency, escos, heartbeat_interval)
    VALUES (p_worker, p_host, p_pid, p_version, p_concurrency, served, p_heartbeat)
    ON CONFLICT (name) DO UPDATE
        SET host = excluded.host, pid = excluded.pid, version = excluded.version,
            concurrency = excluded.concurrency, escos = excluded.escos,
            heartbeat_interval = excluded.heartbeat_interval, started_at = pg_catalog.now(),
            heartbeat_at = pg_catalog.now(), in_flight = 0, commands_finished = 0, commands_per_minute = 0,
            drain_requested_at = NULL, drain_requested_by = NULL, stopped_at = NULL
    RETURNING w.id INTO worker_id;
    RETURN worker_id;
END
$$;

-- A worker's heartbeat: how many commands it runs and has finished since it
-- started. Returns whether it is asked to drain (null: not registered; the
-- worker registers again).
CREATE FUNCTION flows.worker_heartbeat_v1(p_worker text, p_in_flight integer, p_finished bigint)
RETURNS boolean
LANGUAGE sql
SET search_path = ''
BEGIN ATOMIC
    UPDATE flows.workers AS w
    SET heartbeat_at = pg_catalog.now(), in_flight = p_in_flight, commands_finished = p_finished,
        commands_per_minute = round(w.commands_per_minute * (1 - t.weight)
                                    + greatest(p_finished - w.commands_finished, 0) * 60 / t.seconds * t.weight, 1)
    FROM (SELECT x.name, greatest(extract(epoch FROM pg_catalog.now() - x.heartbeat_at), 0.001) AS seconds,
                 least(1, extract(epoch FROM pg_catalog.now() - x.heartbeat_at) / 60) AS weight
          FROM flows.workers AS x WHERE x.name = p_worker) AS t
    WHERE w.name = t.name AND w.stopped_at IS NULL
    RETURNING w.drain_requested_at IS NOT NULL;
END;

-- A worker that stopped (SIGTERM, a drain, or Ctrl-C), with its last counts.
CREATE FUNCTION flows.worker_stopped_v1(p_worker text, p_finished bigint) RETURNS void
LANGUAGE sql
SET search_path = ''
BEGIN ATOMIC
    UPDATE flows.workers AS w
    SET stopped_at = pg_catalog.now(), heartbeat_at = pg_catalog.now(), in_flight = 0,
        commands_finished = greatest(w.commands_finished, p_finished)
    WHERE w.name = p_worker;
END;

-- ---- schema/timeseries.sql: concurrent sessions may create the same partition ----
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
            -- Asked again of the catalog itself, not its cache: a session that waited for the lock while
            -- another created the partition still holds "no such table" in its cache.
            IF NOT EXISTS (SELECT FROM pg_catalog.pg_class AS c
                           WHERE c.relname = partition_name AND c.relnamespace = 'flows'::regnamespace) THEN
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

-- ---- schema/commands.sql ----
ALTER TABLE flows.meter_commands DROP CONSTRAINT meter_commands_kind_valid;
ALTER TABLE flows.meter_commands ADD CONSTRAINT meter_commands_kind_valid
    CHECK (kind IN ('sync', 'send_token', 'set_future_tariff', 'read_profile_log', 'set_clock', 'emop_session'));
CREATE INDEX meter_commands_emop_session_idx ON flows.meter_commands (updated_at)
    WHERE kind = 'emop_session' AND status IN ('pending', 'running');

CREATE FUNCTION flows.command_priority(p_kind text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE p_kind WHEN 'send_token' THEN 0 WHEN 'emop_session' THEN 1 ELSE 2 END;
CREATE INDEX meter_commands_first_idx ON flows.meter_commands (meter_id)
    WHERE status = 'pending' AND flows.command_priority(kind) < 2;
CREATE FUNCTION flows.emop_session_patience() RETURNS interval
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN interval '30 seconds';
CREATE FUNCTION flows.expire_meter_commands() RETURNS void
LANGUAGE sql
SET search_path = ''
BEGIN ATOMIC
    UPDATE flows.meter_commands AS c
    SET status = 'failed', lease_owner = NULL, lease_expires_at = NULL, finished_at = pg_catalog.now(),
        last_error = pg_catalog.format('abandoned: the worker''s lease ran out on attempt %s of %s (%s)',
                                       c.attempts, c.max_attempts, coalesce(c.last_error, 'no error recorded'))
    WHERE c.status = 'running' AND c.lease_expires_at < pg_catalog.now() AND c.attempts > c.max_attempts;
    UPDATE flows.meter_commands AS c
    SET status = CASE c.status WHEN 'running' THEN 'failed' ELSE 'cancelled' END,
        lease_owner = NULL, lease_expires_at = NULL, finished_at = pg_catalog.now(),
        last_error = CASE c.status WHEN 'running' THEN 'abandoned: the emop session''s lease ran out'
                                   ELSE 'the operator stopped waiting' END
    WHERE c.kind = 'emop_session' AND c.status IN ('pending', 'running')
      AND CASE c.status WHEN 'running' THEN c.lease_expires_at < pg_catalog.now()
               ELSE c.updated_at < pg_catalog.now() - flows.emop_session_patience() END;
END;
CREATE FUNCTION flows.claim_meter_commands_v2(p_worker text, p_limit integer, p_lease interval DEFAULT '2 minutes')
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
    me flows.workers;
BEGIN
    IF global_limit !~ '^[0-9]{1,9}$' THEN
        RAISE EXCEPTION 'flows.max_running_commands must be a whole number, got %', global_limit
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO me FROM flows.workers AS w WHERE w.name = p_worker;
    IF me.drain_requested_at IS NOT NULL OR me.stopped_at IS NOT NULL THEN
        RETURN;
    END IF;
    PERFORM pg_catalog.pg_advisory_xact_lock(flows.lock_key('command_claims'), 0);
    PERFORM flows.expire_meter_commands();
    SELECT global_limit::integer - count(*) INTO global_free
    FROM flows.meter_commands AS r WHERE r.status = 'running' AND r.lease_expires_at >= pg_catalog.now();
    IF least(p_limit, global_free) < 1 THEN
        RETURN;
    END IF;
    RETURN QUERY
    WITH due AS (
        SELECT c.id, c.meter_id, c.esco, c.kind, c.run_at, c.created_at, c.status = 'running' AS orphaned,
               flows.command_priority(c.kind) AS priority
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
        WHERE me.escos IS NULL OR e.id = ANY (me.escos)
    ),
    one_per_meter AS (  -- a command a dead worker left half done goes first: it may need reconciling
        SELECT DISTINCT ON (d.meter_id) d.id, d.esco, d.kind, d.priority, d.run_at, d.created_at
        FROM due AS d
        JOIN flows.meter_registry AS m ON m.id = d.meter_id
        WHERE m.mode = 'active' AND NOT EXISTS (SELECT FROM busy AS b WHERE b.meter_id = d.meter_id)
        ORDER BY d.meter_id, d.orphaned DESC, d.priority, d.run_at, d.created_at
    ),
    chosen AS (
        SELECT o.id
        FROM (SELECT o.*, row_number() OVER (PARTITION BY o.esco ORDER BY o.priority, o.run_at, o.created_at) AS n
              FROM one_per_meter AS o
              WHERE o.kind <> 'emop_session') AS o
        JOIN room AS r ON r.esco = o.esco
        WHERE o.n <= r.free
        ORDER BY o.priority, o.run_at, o.created_at
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
COMMENT ON FUNCTION flows.claim_meter_commands_v2(text, integer, interval) IS
    'Claims due commands for a registered worker (its ESCOs; nothing while draining): one per meter, top-ups '
    'first, within ESCO and global limits; returns how to reach each meter and what it is.';

CREATE OR REPLACE FUNCTION flows.claim_meter_commands_v1(p_worker text, p_limit integer, p_lease interval DEFAULT '2 minutes')
RETURNS TABLE (
    id uuid, kind text, parameters jsonb, attempt smallint, max_attempts smallint, progress jsonb,
    meter_id uuid, serial text, ip_address inet, emop_port integer, hardware text, three_phase boolean,
    esco_code text, registers jsonb, created_at timestamptz, lease_expires_at timestamptz
)
LANGUAGE sql
SET search_path = ''
AS $$
    SELECT * FROM flows.claim_meter_commands_v2(p_worker, p_limit, p_lease)
$$;

CREATE FUNCTION flows.record_command_outcomes(p_meter_ids uuid[], p_outcomes jsonb[], p_contact boolean)
RETURNS void
LANGUAGE plpgsql
SET search_path = ''
SET plan_cache_mode = 'force_generic_plan'  -- its statements are cheaper to run than to plan
AS $$
DECLARE
    states jsonb;
    source text;
    meter uuid;
    events jsonb;
BEGIN
    FOR source IN
        SELECT DISTINCT coalesce(o.outcome -> 'intervals' ->> 'source', 'profile_log')
        FROM unnest(p_outcomes) AS o (outcome) WHERE o.outcome ? 'intervals'
    LOOP
        PERFORM flows.record_interval_hh(
            array_agg(h.register_id ORDER BY o.n, h.k), array_agg(h.ts ORDER BY o.n, h.k),
            array_agg(h.import_kwh ORDER BY o.n, h.k), array_agg(h.export_kwh ORDER BY o.n, h.k), source)
        FROM unnest(p_outcomes) WITH ORDINALITY AS o (outcome, n)
        CROSS JOIN LATERAL unnest(
            ARRAY(SELECT pg_catalog.jsonb_array_elements_text(o.outcome -> 'intervals' -> 'register_ids'))::uuid[],
            ARRAY(SELECT pg_catalog.jsonb_array_elements_text(o.outcome -> 'intervals' -> 'timestamps'))::timestamptz[],
            ARRAY(SELECT pg_catalog.jsonb_array_elements_text(o.outcome -> 'intervals' -> 'import_kwh'))::numeric[],
            ARRAY(SELECT pg_catalog.jsonb_array_elements_text(o.outcome -> 'intervals' -> 'export_kwh'))::numeric[])
            WITH ORDINALITY AS h (register_id, ts, import_kwh, export_kwh, k)
        WHERE o.outcome ? 'intervals' AND coalesce(o.outcome -> 'intervals' ->> 'source', 'profile_log') = source;
    END LOOP;
    FOR meter, events IN
        SELECT o.meter_id, o.outcome -> 'events' FROM unnest(p_meter_ids, p_outcomes) AS o (meter_id, outcome)
        WHERE o.outcome ? 'events'
    LOOP
        PERFORM flows.record_meter_events(
            meter,
            ARRAY(SELECT pg_catalog.jsonb_array_elements_text(events -> 'timestamps'))::timestamptz[],
            ARRAY(SELECT pg_catalog.jsonb_array_elements_text(events -> 'event_types'))::integer[],
            ARRAY(SELECT pg_catalog.jsonb_array_elements_text(events -> 'event_sets'))::integer[]);
    END LOOP;
    UPDATE flows.meter_registry AS m
    SET hardware = coalesce(o.outcome -> 'meter' ->> 'hardware', m.hardware),
        firmware_version = coalesce(o.outcome -> 'meter' ->> 'firmware_version', m.firmware_version)
    FROM unnest(p_meter_ids, p_outcomes) AS o (meter_id, outcome)
    WHERE m.id = o.meter_id AND o.outcome ? 'meter';
    SELECT pg_catalog.jsonb_agg(s.state ORDER BY o.n, s.k) INTO states
    FROM unnest(p_meter_ids, p_outcomes) WITH ORDINALITY AS o (meter_id, outcome, n)
    CROSS JOIN LATERAL (SELECT coalesce(o.outcome -> 'states', '[]') AS observed) AS x
    CROSS JOIN LATERAL pg_catalog.jsonb_array_elements(CASE
        WHEN NOT p_contact THEN x.observed
        WHEN pg_catalog.jsonb_array_length(x.observed) > 0 AND (x.observed -> -1 ->> 'meter_id')::uuid = o.meter_id
            THEN pg_catalog.jsonb_set(x.observed, '{-1,health}', '"healthy"')
        ELSE x.observed || pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object(
            'meter_id', o.meter_id, 'observed_at', pg_catalog.now(), 'health', 'healthy'))
        END) WITH ORDINALITY AS s (state, k);
    PERFORM flows.record_meter_states(coalesce(states, '[]'));
END
$$;
CREATE FUNCTION flows.notify_due_meter_commands(p_meter_ids uuid[]) RETURNS void
LANGUAGE sql
SET search_path = ''
BEGIN ATOMIC
    SELECT pg_catalog.pg_notify('flows_meter_commands', string_agg(c.id::text, ','))
    FROM (SELECT c.id FROM flows.meter_commands AS c
          WHERE c.meter_id = ANY (p_meter_ids) AND c.status = 'pending' AND c.run_at <= pg_catalog.now()
          LIMIT 200) AS c
    HAVING count(*) > 0;
END;
CREATE FUNCTION flows.finish_meter_commands_v1(p_worker text, p_finished jsonb)
RETURNS uuid[]
LANGUAGE plpgsql
SET search_path = ''
SET plan_cache_mode = 'force_generic_plan'
AS $$
DECLARE
    held uuid[];
    meter_ids uuid[];
    outcomes jsonb[];
BEGIN
    IF pg_catalog.jsonb_typeof(p_finished) IS DISTINCT FROM 'array' THEN
        RAISE EXCEPTION 'finished commands must be a JSON array of {id, attempt, outcome}'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT array_agg(h.id ORDER BY h.n), array_agg(h.meter_id ORDER BY h.n), array_agg(h.outcome ORDER BY h.n)
    INTO held, meter_ids, outcomes
    FROM (SELECT c.id, c.meter_id, b.outcome, b.n
          FROM ROWS FROM (pg_catalog.jsonb_to_recordset(p_finished) AS (id uuid, attempt integer, outcome jsonb))
              WITH ORDINALITY AS b (id, attempt, outcome, n)
          JOIN flows.meter_commands AS c ON c.id = b.id
          WHERE c.status = 'running' AND c.lease_owner = p_worker AND c.attempts = b.attempt
          ORDER BY c.id
          FOR UPDATE OF c) AS h;
    IF held IS NOT NULL THEN
        PERFORM flows.record_command_outcomes(meter_ids, outcomes, true);
        UPDATE flows.meter_commands AS c
        SET status = 'done', result = coalesce(o.outcome -> 'result', '{}'), last_error = NULL,
            lease_owner = NULL, lease_expires_at = NULL, finished_at = pg_catalog.now()
        FROM unnest(held, outcomes) AS o (id, outcome)
        WHERE c.id = o.id;
        PERFORM flows.note_metrics_synced(array_agg(c.meter_id), array_agg(c.parameters -> 'metrics'))
        FROM flows.meter_commands AS c WHERE c.id = ANY (held) AND c.kind = 'sync'
        HAVING count(*) > 0;
        PERFORM flows.notify_due_meter_commands(meter_ids);
    END IF;
    RETURN ARRAY(SELECT b.id FROM pg_catalog.jsonb_to_recordset(p_finished) AS b (id uuid)
                 WHERE b.id <> ALL (coalesce(held, '{}')));
END
$$;
COMMENT ON FUNCTION flows.finish_meter_commands_v1(text, jsonb) IS
    'Records many commands'' outcomes and marks them done, for those the worker still holds; returns the others.';
CREATE OR REPLACE FUNCTION flows.finish_meter_command_v1(p_id uuid, p_worker text, p_attempt integer, p_outcome jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    IF p_id = ANY (flows.finish_meter_commands_v1(p_worker, pg_catalog.jsonb_build_array(
            pg_catalog.jsonb_build_object('id', p_id, 'attempt', p_attempt, 'outcome', p_outcome)))) THEN
        PERFORM flows.fence_meter_command(p_id, p_worker, p_attempt);
    END IF;
END
$$;
CREATE FUNCTION flows.goes_before(p_waiting flows.meter_commands, p_kind text) RETURNS boolean
LANGUAGE sql STABLE
RETURN p_waiting.status = 'pending' AND p_waiting.run_at <= pg_catalog.now()
   AND flows.command_priority(p_waiting.kind) < flows.command_priority(p_kind)
   AND (p_waiting.kind <> 'emop_session' OR p_waiting.updated_at >= pg_catalog.now() - flows.emop_session_patience());
CREATE FUNCTION flows.command_waiting_before(p_command flows.meter_commands) RETURNS uuid
LANGUAGE sql STABLE
SET search_path = ''
BEGIN ATOMIC
    SELECT c.id FROM flows.meter_commands AS c
    WHERE c.meter_id = p_command.meter_id AND flows.goes_before(c, p_command.kind)
    ORDER BY flows.command_priority(c.kind), c.created_at
    LIMIT 1;
END;
CREATE FUNCTION flows.commands_waited_for_v1(p_worker text) RETURNS uuid[]
LANGUAGE sql STABLE
SET search_path = ''
BEGIN ATOMIC
    SELECT coalesce(array_agg(DISTINCT r.id), '{}')
    FROM flows.meter_commands AS w
    JOIN flows.meter_commands AS r ON r.meter_id = w.meter_id AND r.status = 'running' AND r.lease_owner = p_worker
    WHERE w.status = 'pending' AND flows.command_priority(w.kind) < 2 AND flows.goes_before(w, r.kind);
END;
CREATE FUNCTION flows.hand_back_meter_command(p_id uuid) RETURNS void
LANGUAGE sql
SET search_path = ''
BEGIN ATOMIC
    UPDATE flows.meter_commands AS c
    SET status = 'pending', attempts = c.attempts - 1, lease_owner = NULL, lease_expires_at = NULL
    WHERE c.id = p_id;
    SELECT pg_catalog.pg_notify('flows_meter_commands', p_id::text);
END;
CREATE FUNCTION flows.step_meter_command_v1(p_id uuid, p_worker text, p_attempt integer, p_outcome jsonb,
                                            p_progress jsonb, p_stop boolean DEFAULT false)
RETURNS text
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    command flows.meter_commands;
BEGIN
    command := flows.fence_meter_command(p_id, p_worker, p_attempt);
    PERFORM flows.record_command_outcomes(ARRAY[command.meter_id], ARRAY[coalesce(p_outcome, '{}')], false);
    UPDATE flows.meter_commands AS c SET progress = c.progress || coalesce(p_progress, '{}') WHERE c.id = p_id;
    IF NOT p_stop AND flows.command_waiting_before(command) IS NULL THEN
        RETURN 'continue';
    END IF;
    PERFORM flows.hand_back_meter_command(p_id);
    RETURN CASE WHEN p_stop THEN 'released' ELSE 'yielded' END;
END
$$;
COMMENT ON FUNCTION flows.step_meter_command_v1(uuid, text, integer, jsonb, jsonb, boolean) IS
    'Records a step of long work and its progress; hands the command back when stopping or when a top-up (or '
    'another command that goes first) waits for the meter. Returns continue, yielded or released.';
CREATE OR REPLACE FUNCTION flows.release_meter_command_v1(p_id uuid, p_worker text, p_attempt integer)
RETURNS void
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    PERFORM flows.fence_meter_command(p_id, p_worker, p_attempt);
    PERFORM flows.hand_back_meter_command(p_id);
END
$$;

-- ---- schema/emop_sessions.sql ----
CREATE FUNCTION flows.open_emop_session(p_serial text, p_holder text, p_operation text) RETURNS uuid
LANGUAGE sql
SET search_path = ''
BEGIN ATOMIC
    INSERT INTO flows.meter_commands (esco, meter_id, kind, parameters, requested_by, max_attempts)
    SELECT m.esco, m.id, 'emop_session', pg_catalog.jsonb_build_object('operation', p_operation), p_holder, 1
    FROM flows.meter_registry AS m WHERE m.serial = p_serial
    RETURNING id;
END;
CREATE FUNCTION flows.hold_emop_session(p_id uuid, p_holder text, p_lease interval DEFAULT '30 seconds')
RETURNS TABLE (held boolean, waiting_for text, held_by text, since timestamptz, progress jsonb)
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    session flows.meter_commands;
    other flows.meter_commands;
BEGIN
    PERFORM pg_catalog.pg_advisory_xact_lock(flows.lock_key('command_claims'), 0);
    SELECT * INTO session FROM flows.meter_commands AS c
    WHERE c.id = p_id AND c.kind = 'emop_session' AND c.requested_by = p_holder FOR UPDATE;
    IF NOT FOUND OR session.status NOT IN ('pending', 'running')
       OR (session.status = 'running' AND session.lease_owner IS DISTINCT FROM p_holder) THEN
        RAISE EXCEPTION 'emop session % of % is over (%)', p_id, p_holder,
                        coalesce(session.status || ': ' || session.last_error, session.status, 'no such session')
            USING ERRCODE = 'FL409';
    END IF;
    IF session.status = 'running' THEN
        UPDATE flows.meter_commands AS c SET lease_expires_at = pg_catalog.now() + p_lease WHERE c.id = p_id;
        RETURN QUERY SELECT true, NULL::text, NULL::text, NULL::timestamptz, NULL::jsonb;
        RETURN;
    END IF;
    SELECT * INTO other FROM flows.meter_commands AS c
    WHERE c.meter_id = session.meter_id AND c.id <> p_id
      AND ((c.status = 'running' AND c.lease_expires_at >= pg_catalog.now())
           OR (c.status = 'pending' AND c.run_at <= pg_catalog.now() AND c.kind = 'send_token')
           OR (c.status = 'pending' AND c.kind = 'emop_session' AND c.created_at < session.created_at
               AND c.updated_at >= pg_catalog.now() - flows.emop_session_patience()))
    ORDER BY c.status = 'running' DESC, flows.command_priority(c.kind), c.created_at
    LIMIT 1;
    IF FOUND THEN
        UPDATE flows.meter_commands AS c SET updated_at = pg_catalog.now() WHERE c.id = p_id;  -- still waiting
        RETURN QUERY SELECT false, other.kind, other.lease_owner, coalesce(other.started_at, other.created_at),
                            other.progress;
        RETURN;
    END IF;
    UPDATE flows.meter_commands AS c
    SET status = 'running', attempts = c.attempts + 1, lease_owner = p_holder,
        lease_expires_at = pg_catalog.now() + p_lease, started_at = pg_catalog.now()
    WHERE c.id = p_id;
    RETURN QUERY SELECT true, NULL::text, NULL::text, NULL::timestamptz, NULL::jsonb;
END
$$;
CREATE FUNCTION flows.close_emop_session(p_id uuid, p_holder text, p_error text DEFAULT NULL) RETURNS text
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    closed flows.meter_commands;
BEGIN
    UPDATE flows.meter_commands AS c
    SET status = CASE WHEN c.status = 'pending' THEN 'cancelled' WHEN p_error IS NULL THEN 'done' ELSE 'failed' END,
        result = CASE WHEN c.status = 'running' AND p_error IS NULL
                      THEN pg_catalog.jsonb_build_object('operation', c.parameters ->> 'operation') END,
        last_error = CASE WHEN c.status = 'pending' THEN coalesce(p_error, 'the operator stopped waiting')
                          ELSE p_error END,
        lease_owner = NULL, lease_expires_at = NULL, finished_at = pg_catalog.now()
    WHERE c.id = p_id AND c.kind = 'emop_session' AND c.requested_by = p_holder AND c.status IN ('pending', 'running')
    RETURNING c.* INTO closed;
    IF NOT FOUND THEN
        RETURN (SELECT c.status FROM flows.meter_commands AS c WHERE c.id = p_id AND c.requested_by = p_holder);
    END IF;
    PERFORM flows.notify_due_meter_commands(ARRAY[closed.meter_id]);
    RETURN closed.status;
END
$$;

-- ---- schema/scheduling.sql ----
DROP FUNCTION flows.note_metrics_synced(uuid, jsonb);
CREATE FUNCTION flows.note_metrics_synced(p_meter_ids uuid[], p_metrics jsonb[]) RETURNS void
LANGUAGE sql
SET search_path = ''
BEGIN ATOMIC
    INSERT INTO flows.meter_metric_runs AS r (meter_id, metric, last_synced_at)
    SELECT DISTINCT s.meter_id, m.name, pg_catalog.now()
    FROM unnest(p_meter_ids, p_metrics) AS s (meter_id, metrics)
    JOIN flows.meter_metrics AS m ON s.metrics IS NULL OR s.metrics = 'null' OR s.metrics ? m.name
    ON CONFLICT (meter_id, metric) DO UPDATE SET last_synced_at = excluded.last_synced_at;
END;
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
        WHERE m.mode = 'active' AND r.status = 'enabled'
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

-- ---- rpc/commands.sql, rpc/workers.sql ----
COMMENT ON COLUMN api.meter_commands.kind IS
    'sync, send_token, set_future_tariff, read_profile_log, set_clock, or emop_session (an operator''s emop CLI).';
CREATE OR REPLACE FUNCTION api.request_sync(meter_ids uuid[] DEFAULT NULL, metrics text[] DEFAULT NULL)
RETURNS SETOF api.meter_commands
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    unknown text;
    ids uuid[];
    requester text := flows.requester();  -- once, not once a meter
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
               requester
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
    requester text := flows.requester();  -- once, not once a meter
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
               requester
        FROM flows.meters_to_command(meter_ids, p_prepay => true) AS t
        WHERE NOT whole_esco OR t.esco = flows.current_esco_id()
        RETURNING id
    )
    SELECT array_agg(id) INTO ids FROM added;
    RETURN QUERY SELECT * FROM api.meter_commands AS c WHERE c.id = ANY (ids);
END
$$;
CREATE VIEW api.workers WITH (security_invoker = true) AS
SELECT w.id, w.name, w.host, w.pid, w.version, flows.worker_state(w) AS state, w.concurrency, w.in_flight,
       w.escos,
       (SELECT array_agg(e.code ORDER BY e.code) FROM flows.escos AS e WHERE e.id = ANY (w.escos)) AS esco_codes,
       w.commands_per_minute, w.commands_finished, w.started_at, w.heartbeat_at, w.drain_requested_at,
       w.drain_requested_by, w.stopped_at
FROM flows.workers AS w;
COMMENT ON VIEW api.workers IS
    'Worker processes (administrators): host, pid, version, state (running, draining, stopped, lost), '
    'concurrency, commands in flight, ESCOs served (null: every ESCO), commands per minute, last heartbeat.';
COMMENT ON COLUMN api.workers.state IS
    'running; draining (asked to stop: finishes or hands back its commands, then exits); stopped; '
    'lost (no heartbeat for three intervals: it died, its leases run out).';

-- Drains a worker: it claims nothing more, finishes its short commands, hands
-- long ones back at their next step (another worker resumes them), and exits.
-- Woken at once by NOTIFY flows_workers (its name), else at its next heartbeat.
CREATE FUNCTION api.drain_worker(id uuid) RETURNS SETOF api.workers
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    drained text;
BEGIN
    UPDATE flows.workers AS w
    SET drain_requested_at = coalesce(w.drain_requested_at, pg_catalog.now()),
        drain_requested_by = coalesce(w.drain_requested_by, flows.requester())
    WHERE w.id = drain_worker.id AND w.stopped_at IS NULL
    RETURNING w.name INTO drained;
    IF drained IS NULL THEN
        RAISE EXCEPTION 'no running worker %', drain_worker.id USING ERRCODE = 'invalid_parameter_value',
            HINT = 'GET /workers?state=neq.stopped lists the running ones';
    END IF;
    PERFORM pg_catalog.pg_notify('flows_workers', drained);
    RETURN QUERY SELECT * FROM api.workers AS w WHERE w.id = drain_worker.id;
END
$$;
COMMENT ON FUNCTION api.drain_worker(uuid) IS
    'Drains a worker (administrators): it stops claiming, finishes or hands back its commands, and exits.';

-- ---- rls/privileges.sql, rls/policies.sql ----
-- An index of pending top-ups (meter_commands_first_idx) evaluates it on every request.
GRANT EXECUTE ON FUNCTION flows.command_priority(text) TO flows_operator;
GRANT EXECUTE ON FUNCTION
    flows.claim_meter_commands_v2(text, integer, interval),
    flows.command_priority(text),
    flows.emop_session_patience(),
    flows.expire_meter_commands(),
    flows.record_command_outcomes(uuid[], jsonb[], boolean),
    flows.notify_due_meter_commands(uuid[]),
    flows.finish_meter_commands_v1(text, jsonb),
    flows.goes_before(flows.meter_commands, text),
    flows.command_waiting_before(flows.meter_commands),
    flows.commands_waited_for_v1(text),
    flows.hand_back_meter_command(uuid),
    flows.step_meter_command_v1(uuid, text, integer, jsonb, jsonb, boolean),
    flows.note_metrics_synced(uuid[], jsonb[])
TO flows_service, flows_admin;
-- Workers register, beat and stop (flows_service); administrators see them
-- and drain them (api.workers, api.drain_worker).
GRANT SELECT, INSERT, UPDATE, DELETE ON flows.workers TO flows_service;
GRANT SELECT ON flows.workers, api.workers TO flows_admin;
GRANT UPDATE (drain_requested_at, drain_requested_by) ON flows.workers TO flows_admin;
GRANT EXECUTE ON FUNCTION flows.worker_state(flows.workers) TO flows_service, flows_admin;
GRANT EXECUTE ON FUNCTION
    flows.register_worker_v1(text, text, integer, text, integer, text[], interval),
    flows.worker_heartbeat_v1(text, integer, bigint),
    flows.worker_stopped_v1(text, bigint)
TO flows_service;
GRANT EXECUTE ON FUNCTION api.drain_worker(uuid) TO flows_admin;

-- Operators' emop sessions: the emop CLI, logged in as a worker or an administrator.
GRANT EXECUTE ON FUNCTION
    flows.open_emop_session(text, text, text),
    flows.hold_emop_session(uuid, text, interval),
    flows.close_emop_session(uuid, text, text)
TO flows_service, flows_admin;
-- Workers: platform processes, seen by administrators and written by the workers themselves.
ALTER TABLE flows.workers ENABLE ROW LEVEL SECURITY;
CREATE POLICY workers_all ON flows.workers TO flows_admin, flows_service
    USING (true);
