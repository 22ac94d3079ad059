-- 0005_commands_and_scheduling: Meter commands (the outbox), the workers' claim/renew/finish/fail, the scheduler.

-- Everything below is created by, and owned by, flows_owner.
SET LOCAL ROLE flows_owner;

-- ---- schema/commands.sql ----
-- Meter commands: every operation on a meter is a row here (the outbox).
-- Requested through the API, claimed by workers woken by NOTIFY, executed over
-- EMOP, and finished by one SQL call that records the results in the same
-- transaction. Lifecycle:
--
--   pending --claim--> running --finish--> done
--      ^                  |  \--fail (retryable, attempts left)--> pending (run_at later)
--      |                  |   \-fail (final, or attempts used up)--> failed
--      +-- release -------+    (lease expired: claimable again)      cancelled (by a user)
--
-- A worker holds a command by a lease (lease_owner, lease_expires_at) that it
-- renews while working; a lease that runs out (the worker died) makes the
-- command claimable again, even past max_attempts once, so the next worker can
-- reconcile what the dead one did (e.g. whether its token was credited) before
-- failing it. `attempts` counts claims and, with the worker's name, is the fencing token:
-- finishing, failing or renewing needs the worker's name and the attempt it
-- claimed, so a worker whose lease expired (and whose command was claimed
-- again) cannot record anything. At most one command per meter runs at a time.

CREATE TABLE flows.meter_commands (
    id               uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    esco             uuid        NOT NULL,
    meter_id         uuid        NOT NULL,
    kind             text        NOT NULL,
    parameters       jsonb       NOT NULL DEFAULT '{}',
    status           text        NOT NULL DEFAULT 'pending',
    attempts         smallint    NOT NULL DEFAULT 0,
    max_attempts     smallint    NOT NULL DEFAULT 5,
    run_at           timestamptz NOT NULL DEFAULT now(),
    lease_owner      text,
    lease_expires_at timestamptz,
    progress         jsonb       NOT NULL DEFAULT '{}',
    result           jsonb,
    last_error       text,
    idempotency_key  text,
    batch_id         uuid,
    requested_by     text        NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    finished_at      timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT meter_commands_meter_esco_fkey
        FOREIGN KEY (meter_id, esco) REFERENCES flows.meter_registry (id, esco) ON DELETE CASCADE,
    CONSTRAINT meter_commands_kind_valid
        CHECK (kind IN ('sync', 'send_token', 'set_future_tariff', 'read_profile_log', 'set_clock')),
    CONSTRAINT meter_commands_status_valid CHECK (status IN ('pending', 'running', 'done', 'failed', 'cancelled')),
    CONSTRAINT meter_commands_attempts_range CHECK (attempts >= 0 AND max_attempts BETWEEN 1 AND 20),
    CONSTRAINT meter_commands_parameters_object CHECK (jsonb_typeof(parameters) = 'object'),
    CONSTRAINT meter_commands_lease_when_running
        CHECK ((status = 'running') = (lease_owner IS NOT NULL AND lease_expires_at IS NOT NULL)),
    CONSTRAINT meter_commands_finished_when_final
        CHECK ((status IN ('done', 'failed', 'cancelled')) = (finished_at IS NOT NULL)),
    CONSTRAINT meter_commands_esco_idempotency_key UNIQUE (esco, idempotency_key)
);
COMMENT ON TABLE flows.meter_commands IS 'Operations on meters, executed by the workers (the outbox).';

-- A token is pushed to a meter by one command only, ever.
CREATE UNIQUE INDEX meter_commands_token_once ON flows.meter_commands (meter_id, (parameters ->> 'token'))
    WHERE kind = 'send_token' AND parameters ? 'token';
-- Claiming looks at what is due or whose lease ran out.
CREATE INDEX meter_commands_due_idx ON flows.meter_commands (run_at) WHERE status = 'pending';
CREATE INDEX meter_commands_running_idx ON flows.meter_commands (meter_id, lease_expires_at) WHERE status = 'running';
CREATE INDEX meter_commands_meter_idx ON flows.meter_commands (meter_id, created_at);
CREATE INDEX meter_commands_batch_idx ON flows.meter_commands (batch_id) WHERE batch_id IS NOT NULL;

CREATE TRIGGER meter_commands_touch BEFORE UPDATE ON flows.meter_commands
    FOR EACH ROW EXECUTE FUNCTION flows.touch_updated_at();

-- How many commands of one ESCO may run at once, across all workers.
ALTER TABLE flows.escos ADD COLUMN max_running_commands integer NOT NULL DEFAULT 50
    CONSTRAINT escos_max_running_commands_range CHECK (max_running_commands BETWEEN 1 AND 10000);
COMMENT ON COLUMN flows.escos.max_running_commands IS 'Commands of this ESCO that may run at once, across all workers.';


-- Wakes the workers: NOTIFY flows_meter_commands with the new ids (comma
-- separated, in chunks that fit a notification). Workers also poll, so a lost
-- notification only delays a command.
CREATE FUNCTION flows.notify_meter_commands() RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    ids text;
BEGIN
    FOR ids IN
        SELECT string_agg(c.id::text, ',')
        FROM (SELECT n.id, (row_number() OVER () - 1) / 200 AS chunk FROM new_commands AS n
              WHERE n.status = 'pending') AS c
        GROUP BY c.chunk
    LOOP
        PERFORM pg_catalog.pg_notify('flows_meter_commands', ids);
    END LOOP;
    RETURN NULL;
END
$$;

CREATE TRIGGER meter_commands_notify_insert AFTER INSERT ON flows.meter_commands
    REFERENCING NEW TABLE AS new_commands
    FOR EACH STATEMENT EXECUTE FUNCTION flows.notify_meter_commands();


-- Claims up to p_limit due commands for worker p_worker, leased for
-- p_lease: at most one per meter, never for a meter that already has a
-- running command with a live lease, within each ESCO's limit of running
-- commands, and within the global limit: the setting
-- flows.max_running_commands (e.g. ALTER DATABASE flows SET
-- flows.max_running_commands = 300; unset: no limit), for what the network to
-- the meters can carry. Top-ups go first (a customer is waiting for credit),
-- then the oldest due. Claims are serialised (one advisory lock), which makes those
-- checks exact; a claim takes milliseconds. Returns what the worker needs to
-- reach the meter.
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


-- The fence: locks the command and checks the caller still holds it.
CREATE FUNCTION flows.fence_meter_command(p_id uuid, p_worker text, p_attempt integer)
RETURNS flows.meter_commands
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    command flows.meter_commands;
BEGIN
    SELECT * INTO command FROM flows.meter_commands AS c WHERE c.id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no meter command %', p_id USING ERRCODE = 'no_data_found';
    END IF;
    IF command.status <> 'running' OR command.lease_owner IS DISTINCT FROM p_worker
       OR command.attempts <> p_attempt THEN
        RAISE EXCEPTION 'meter command % is no longer held by % (attempt %): it is % by % at attempt %',
            p_id, p_worker, p_attempt, command.status, coalesce(command.lease_owner, 'nobody'), command.attempts
            USING ERRCODE = 'FL409', HINT = 'the lease expired and the command moved on; discard this result';
    END IF;
    RETURN command;
END
$$;


-- Extends the leases the worker still holds; returns those it holds no longer.
CREATE FUNCTION flows.renew_meter_command_leases(p_worker text, p_ids uuid[], p_attempts integer[],
                                                 p_lease interval DEFAULT '2 minutes')
RETURNS uuid[]
LANGUAGE sql
SET search_path = ''
BEGIN ATOMIC
    WITH held AS (
        SELECT h.id, h.attempt FROM unnest(p_ids, p_attempts) AS h (id, attempt)
    ),
    renewed AS (
        UPDATE flows.meter_commands AS c
        SET lease_expires_at = pg_catalog.now() + p_lease
        FROM held AS h
        WHERE c.id = h.id AND c.attempts = h.attempt AND c.status = 'running' AND c.lease_owner = p_worker
        RETURNING c.id
    )
    SELECT coalesce(array_agg(h.id), '{}') FROM held AS h WHERE h.id NOT IN (SELECT r.id FROM renewed AS r);
END;


-- Saves how far a command got (e.g. the token vended, the balance and
-- transaction count before a push), durably, before the next risky step.
CREATE FUNCTION flows.note_meter_command_progress(p_id uuid, p_worker text, p_attempt integer, p_progress jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    PERFORM flows.fence_meter_command(p_id, p_worker, p_attempt);
    UPDATE flows.meter_commands AS c
    SET progress = c.progress || p_progress,
        parameters = CASE WHEN p_progress ? 'token' AND c.kind = 'send_token'
                          THEN c.parameters || pg_catalog.jsonb_build_object('token', p_progress ->> 'token')
                          ELSE c.parameters END
    WHERE c.id = p_id;
END
$$;


-- Finishes a command: records what the worker observed (meter states, half
-- hours, events), marks the meter healthy, and the command done, all in one
-- transaction behind the fence. p_outcome keys (all optional):
--   states: [meter state objects, see flows.record_meter_states]
--   intervals: {register_ids, timestamps, import_kwh, export_kwh, source}
--   events: {timestamps, event_types, event_sets}
--   meter: {hardware, firmware_version}   -- what the meter says it is
--   result: what the API shows as the command's result
CREATE FUNCTION flows.finish_meter_command(p_id uuid, p_worker text, p_attempt integer, p_outcome jsonb)
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
COMMENT ON FUNCTION flows.finish_meter_command(uuid, text, integer, jsonb) IS
    'Records a command''s outcome (states, half hours, events) and marks it done, if the worker still holds it.';


-- A failed attempt. Retryable errors (meter unreachable, damaged frames) go
-- back to pending with exponential backoff (from p_backoff) until max_attempts; a final error
-- (the meter refused: NAK, a token rejected) fails at once. Either way the
-- meter is marked unhealthy with the reason.
CREATE FUNCTION flows.fail_meter_command(p_id uuid, p_worker text, p_attempt integer, p_error text,
                                         p_retryable boolean, p_backoff interval DEFAULT '10 seconds')
RETURNS text
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    command flows.meter_commands;
    retry boolean;
BEGIN
    command := flows.fence_meter_command(p_id, p_worker, p_attempt);
    retry := p_retryable AND command.attempts < command.max_attempts;
    UPDATE flows.meter_commands AS c
    SET status = CASE WHEN retry THEN 'pending' ELSE 'failed' END,
        last_error = p_error,
        run_at = CASE WHEN retry THEN pg_catalog.now() + flows.retry_delay(command.attempts, p_backoff)
                      ELSE c.run_at END,
        lease_owner = NULL, lease_expires_at = NULL,
        finished_at = CASE WHEN retry THEN NULL ELSE pg_catalog.now() END
    WHERE c.id = p_id;
    PERFORM flows.record_meter_states(pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object(
        'meter_id', command.meter_id, 'observed_at', pg_catalog.now(), 'health', 'unhealthy',
        'health_details', pg_catalog.format('%s (%s, attempt %s of %s)', p_error, command.kind,
                                            command.attempts, command.max_attempts))));
    RETURN CASE WHEN retry THEN 'pending' ELSE 'failed' END;
END
$$;

-- Exponential backoff with jitter: base (10 s in production), 2x, 4x ...
-- capped at 30 minutes.
CREATE FUNCTION flows.retry_delay(attempt integer, base interval) RETURNS interval
LANGUAGE sql VOLATILE
RETURN least(interval '30 minutes', base * power(2, greatest(attempt - 1, 0))) * (0.75 + random() / 2);


-- A worker that stops (shutdown) hands back what it has not started on the
-- meter: pending again, the attempt not counted.
CREATE FUNCTION flows.release_meter_command(p_id uuid, p_worker text, p_attempt integer)
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

-- ---- schema/scheduling.sql ----
-- The scheduler: turns meter_metrics into sync commands for active meters,
-- estimates half hours from the reads recorded since its last pass, queues
-- profile-log reads for half hours that are missing or only estimated, and
-- follows tariffs past their activation. Every worker runs it every few
-- seconds; an advisory lock lets one run at a time, and the state below makes
-- it enqueue nothing twice.

-- When each metric was last requested and last read, per meter.
CREATE TABLE flows.meter_metric_runs (
    meter_id          uuid        NOT NULL REFERENCES flows.meter_registry (id) ON DELETE CASCADE,
    metric            text        NOT NULL REFERENCES flows.meter_metrics (name) ON DELETE CASCADE ON UPDATE CASCADE,
    last_requested_at timestamptz,
    last_synced_at    timestamptz,
    PRIMARY KEY (meter_id, metric)
);
COMMENT ON TABLE flows.meter_metric_runs IS 'When the scheduler last requested, and a worker last read, each metric of each meter.';

CREATE FUNCTION flows.metric_interval(run_frequency text) RETURNS interval
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE run_frequency
    WHEN 'hourly' THEN interval '1 hour'
    WHEN '12hourly' THEN interval '12 hours'
    WHEN 'daily' THEN interval '1 day'
END;

-- Called when a sync command finishes: these metrics were read now.
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

-- Enqueues a sync for every active meter with metrics due (at most one
-- pending or running sync per meter). Returns the number of commands queued.
CREATE FUNCTION flows.schedule_syncs() RETURNS integer
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    queued integer;
BEGIN
    WITH due AS (
        SELECT m.id AS meter_id, m.esco, array_agg(x.name ORDER BY x.name) AS metrics
        FROM flows.meter_registry AS m
        CROSS JOIN flows.meter_metrics AS x
        LEFT JOIN flows.meter_metric_runs AS r ON r.meter_id = m.id AND r.metric = x.name
        WHERE m.mode = 'active' AND x.enabled
          AND (r.last_requested_at IS NULL
               OR r.last_requested_at <= pg_catalog.now() - flows.metric_interval(x.run_frequency))
          AND NOT EXISTS (SELECT FROM flows.meter_commands AS c
                          WHERE c.meter_id = m.id AND c.kind = 'sync' AND c.status IN ('pending', 'running'))
        GROUP BY m.id, m.esco
    ),
    noted AS (
        INSERT INTO flows.meter_metric_runs AS r (meter_id, metric, last_requested_at)
        SELECT d.meter_id, unnest(d.metrics), pg_catalog.now() FROM due AS d
        ON CONFLICT (meter_id, metric) DO UPDATE SET last_requested_at = excluded.last_requested_at
    )
    INSERT INTO flows.meter_commands (esco, meter_id, kind, parameters, requested_by, max_attempts)
    SELECT d.esco, d.meter_id, 'sync', pg_catalog.jsonb_build_object('metrics', pg_catalog.to_jsonb(d.metrics)),
           'scheduler', 3
    FROM due AS d;
    GET DIAGNOSTICS queued = ROW_COUNT;
    RETURN queued;
END
$$;

-- Days (UK, the last seven before today) on which an active meter's registers
-- have half hours missing or only estimated from reads, with no profile-log
-- read queued or run for that meter since the day ended.
CREATE FUNCTION flows.schedule_profile_log_reads(p_days integer DEFAULT 7) RETURNS integer
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

-- Meters whose future tariff's activation time has passed: read the tariffs
-- again, so the new one becomes tariffs_active.
CREATE FUNCTION flows.schedule_tariff_checks() RETURNS integer
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    queued integer;
BEGIN
    INSERT INTO flows.meter_commands (esco, meter_id, kind, parameters, requested_by)
    SELECT m.esco, m.id, 'sync', '{"metrics": ["tariffs_active", "tariffs_future"]}', 'scheduler'
    FROM flows.meter_registry AS m
    JOIN flows.meter_shadows AS s ON s.id = m.id
    WHERE m.mode = 'active'
      AND (s.tariffs_future ->> 'activation_datetime')::timestamptz <= pg_catalog.now()
      AND s.tariffs_updated_at < (s.tariffs_future ->> 'activation_datetime')::timestamptz
      AND NOT EXISTS (SELECT FROM flows.meter_commands AS c  -- nothing under way, no check in the last hour
                      WHERE c.meter_id = m.id AND c.kind = 'sync'
                        AND (c.status IN ('pending', 'running')
                             OR (c.created_at >= pg_catalog.now() - interval '1 hour'
                                 AND c.parameters -> 'metrics' ? 'tariffs_active')));
    GET DIAGNOSTICS queued = ROW_COUNT;
    RETURN queued;
END
$$;

-- One scheduler pass; one at a time across workers (others return at once).
-- Returns what it queued, or null when another pass was running.
CREATE FUNCTION flows.run_scheduler() RETURNS jsonb
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
COMMENT ON FUNCTION flows.run_scheduler() IS
    'One scheduler pass: half hours estimated from new reads, due syncs, tariff follow-ups, '
    'profile-log gap reads, partitions ahead.';

-- ---- rpc/commands.sql ----
-- Meter operations as commands: request them here, watch them in
-- /meter_commands, follow tariff rollouts in /tariff_rollouts.

CREATE VIEW api.meter_commands WITH (security_invoker = true) AS
SELECT id, esco, meter_id, kind, parameters, status, attempts, max_attempts, run_at, progress, result,
       last_error, idempotency_key, batch_id, requested_by, lease_owner, lease_expires_at,
       created_at, started_at, finished_at, updated_at
FROM flows.meter_commands;
COMMENT ON VIEW api.meter_commands IS
    'Operations on meters and how they went: pending, running, done (result), failed (last_error), cancelled. '
    'Embed the meter: ?select=*,meter_registry(serial).';
COMMENT ON COLUMN api.meter_commands.kind IS 'sync, send_token, set_future_tariff, read_profile_log or set_clock.';
COMMENT ON COLUMN api.meter_commands.progress IS 'How far a running command got (e.g. token vended, balance before).';
COMMENT ON COLUMN api.meter_commands.batch_id IS 'Commands requested together (e.g. one tariff rollout).';

CREATE VIEW api.tariff_rollouts WITH (security_invoker = true) AS
SELECT c.batch_id AS rollout_id,
       c.esco,
       min(c.created_at) AS requested_at,
       (array_agg(c.parameters -> 'tariff'))[1] AS tariff,
       count(*) AS meters,
       count(*) FILTER (WHERE c.status = 'done') AS confirmed,
       count(*) FILTER (WHERE c.status = 'failed') AS failed,
       count(*) FILTER (WHERE c.status IN ('pending', 'running')) AS in_progress,
       count(*) FILTER (WHERE c.status = 'cancelled') AS cancelled,
       coalesce((SELECT jsonb_object_agg(f.reason, f.meters) FROM (
                     SELECT x.last_error AS reason, count(*) AS meters FROM flows.meter_commands AS x
                     WHERE x.batch_id = c.batch_id AND x.status = 'failed' GROUP BY x.last_error) AS f),
                '{}') AS failure_reasons,
       format('%s of %s confirmed, %s failed%s', count(*) FILTER (WHERE c.status = 'done'), count(*),
              count(*) FILTER (WHERE c.status = 'failed'),
              coalesce(': ' || (SELECT string_agg(format('%s (%s)', f.reason, f.meters), '; ' ORDER BY f.meters DESC)
                                FROM (SELECT x.last_error AS reason, count(*) AS meters FROM flows.meter_commands AS x
                                      WHERE x.batch_id = c.batch_id AND x.status = 'failed'
                                      GROUP BY x.last_error) AS f), '')) AS summary
FROM flows.meter_commands AS c
WHERE c.kind = 'set_future_tariff' AND c.batch_id IS NOT NULL
GROUP BY c.batch_id, c.esco;
COMMENT ON VIEW api.tariff_rollouts IS
    'Tariff rollouts (set_future_tariff to many meters): how many meters confirmed the tariff, failed and why.';


-- Meters a request names, checked: visible to the caller, active (passive
-- meters are digital twins and never contacted) and, for prepayment
-- operations (p_prepay: tokens, tariffs), prepay meters: prepay_enabled and
-- single phase (three-phase Emlite meters have no prepayment or tariff
-- objects). Null: every such meter the caller can see (an operator's ESCO).
CREATE FUNCTION flows.meters_to_command(p_meter_ids uuid[], p_prepay boolean DEFAULT false)
RETURNS TABLE (meter_id uuid, esco uuid)
LANGUAGE plpgsql STABLE
SET search_path = ''
AS $$
DECLARE
    problem text;
BEGIN
    IF p_meter_ids IS NULL THEN
        RETURN QUERY SELECT m.id, m.esco FROM flows.meter_registry AS m
                     WHERE m.mode = 'active' AND (NOT p_prepay OR (m.prepay_enabled AND NOT flows.is_three_phase(m)));
        RETURN;
    END IF;
    SELECT string_agg(pg_catalog.format('%s (%s)', x.id, CASE
               WHEN m.id IS NULL THEN 'no such meter'
               WHEN m.mode <> 'active' THEN 'passive: a digital twin, never contacted'
               WHEN flows.is_three_phase(m) THEN 'three phase: no prepayment or tariffs'
               ELSE 'prepayment disabled' END), ', ')
    INTO problem
    FROM unnest(p_meter_ids) AS x (id)
    LEFT JOIN flows.meter_registry AS m ON m.id = x.id
    WHERE m.id IS NULL OR m.mode <> 'active' OR (p_prepay AND (NOT m.prepay_enabled OR flows.is_three_phase(m)));
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION 'cannot command meter %', problem USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY SELECT DISTINCT m.id, m.esco FROM flows.meter_registry AS m WHERE m.id = ANY (p_meter_ids);
END
$$;

-- Who asked, for requested_by.
CREATE FUNCTION flows.requester() RETURNS text
LANGUAGE sql STABLE
SET search_path = ''
AS $$
    SELECT coalesce(flows.jwt_claims() ->> 'sub', flows.jwt_claims() ->> 'email', current_user)
$$;


CREATE FUNCTION api.request_sync(meter_ids uuid[] DEFAULT NULL, metrics text[] DEFAULT NULL)
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
COMMENT ON FUNCTION api.request_sync(uuid[], text[]) IS
    'Reads meters now: the named metrics (default all enabled, see meter_metrics) of the named meters '
    '(default every active meter of your ESCO). Returns the commands.';


CREATE FUNCTION api.send_token(
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
COMMENT ON FUNCTION api.send_token(uuid, numeric, text, text, text) IS
    'Credits a meter: with amount (GBP) a token is vended for it, or give the 20-digit token. The balance is read '
    'before and after; a token is never pushed twice. idempotency_key makes retries of this request safe.';


CREATE FUNCTION api.set_future_tariff(tariff jsonb, meter_ids uuid[] DEFAULT NULL, whole_esco boolean DEFAULT false)
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
COMMENT ON FUNCTION api.set_future_tariff(jsonb, uuid[], boolean) IS
    'Writes a future tariff (with activation_datetime) to meters, reads it back to confirm; one command per '
    'meter, grouped as a rollout (see tariff_rollouts). Ranges: standing charge 0-2 GBP/day, unit rates 0-1 GBP/kWh.';


CREATE FUNCTION api.read_profile_log(meter_id uuid, start_time timestamptz, end_time timestamptz)
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
COMMENT ON FUNCTION api.read_profile_log(uuid, timestamptz, timestamptz) IS
    'Reads the meter''s half-hourly profile log for a time range (up to 31 days) into register_interval_hh.';


CREATE FUNCTION api.set_clock(meter_id uuid) RETURNS SETOF api.meter_commands
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
COMMENT ON FUNCTION api.set_clock(uuid) IS 'Sets the meter''s clock to the server''s (UTC) and records the drift.';


CREATE FUNCTION api.cancel_meter_command(id uuid) RETURNS SETOF api.meter_commands
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    UPDATE flows.meter_commands AS c
    SET status = 'cancelled', finished_at = pg_catalog.now(), last_error = 'cancelled by ' || flows.requester()
    WHERE c.id = cancel_meter_command.id AND c.status = 'pending';
    IF NOT FOUND THEN
        RAISE EXCEPTION 'only a pending command can be cancelled (this one is %)',
            coalesce((SELECT c.status FROM flows.meter_commands AS c WHERE c.id = cancel_meter_command.id), 'unknown')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY SELECT * FROM api.meter_commands AS c WHERE c.id = cancel_meter_command.id;
END
$$;
COMMENT ON FUNCTION api.cancel_meter_command(uuid) IS 'Cancels a command that has not started.';

-- ---- rls/privileges.sql: Commands and scheduling ----
-- Operators (and admins) request meter operations; analysts watch them.
GRANT SELECT ON flows.meter_commands, api.meter_commands, api.tariff_rollouts
    TO flows_admin, flows_operator, flows_analyst, flows_service;
GRANT INSERT, UPDATE ON flows.meter_commands TO flows_admin, flows_operator, flows_service;
GRANT EXECUTE ON FUNCTION
    api.request_sync(uuid[], text[]),
    api.send_token(uuid, numeric, text, text, text),
    api.set_future_tariff(jsonb, uuid[], boolean),
    api.read_profile_log(uuid, timestamptz, timestamptz),
    api.set_clock(uuid),
    api.cancel_meter_command(uuid),
    flows.meters_to_command(uuid[], boolean),
    flows.requester()
TO flows_admin, flows_operator;

-- The workers: claim, renew, finish or fail commands; run the scheduler.
GRANT SELECT, INSERT, UPDATE ON flows.meter_metric_runs TO flows_service, flows_admin;
GRANT SELECT ON flows.meter_metric_runs TO flows_operator, flows_analyst;
GRANT EXECUTE ON FUNCTION
    flows.claim_meter_commands(text, integer, interval),
    flows.fence_meter_command(uuid, text, integer),
    flows.renew_meter_command_leases(text, uuid[], integer[], interval),
    flows.note_meter_command_progress(uuid, text, integer, jsonb),
    flows.finish_meter_command(uuid, text, integer, jsonb),
    flows.fail_meter_command(uuid, text, integer, text, boolean, interval),
    flows.release_meter_command(uuid, text, integer),
    flows.retry_delay(integer, interval),
    flows.note_metrics_synced(uuid, jsonb),
    flows.metric_interval(text),
    flows.schedule_syncs(),
    flows.schedule_profile_log_reads(integer),
    flows.schedule_tariff_checks(),
    flows.run_scheduler()
TO flows_service, flows_admin;

-- ---- rls/policies.sql: Commands and scheduling ----
ALTER TABLE flows.meter_commands ENABLE ROW LEVEL SECURITY;
CREATE POLICY meter_commands_all ON flows.meter_commands TO flows_admin, flows_service
    USING (true);
CREATE POLICY meter_commands_own_esco ON flows.meter_commands TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));

ALTER TABLE flows.meter_metric_runs ENABLE ROW LEVEL SECURITY;
CREATE POLICY meter_metric_runs_all ON flows.meter_metric_runs TO flows_admin, flows_service
    USING (true);
CREATE POLICY meter_metric_runs_visible_meter ON flows.meter_metric_runs FOR SELECT
    TO flows_operator, flows_analyst
    USING (meter_id IN (SELECT m.id FROM flows.meter_registry AS m));
