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
--
-- The functions a running worker calls end in a version (_v1): a deploy that
-- changes what one takes or returns adds _v2 beside it and drops _v1 only once
-- no worker calls it (docs/database.md, "Versioned functions"). What they call
-- in turn (fence, record_*) changes with the deploy, in one transaction.

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

-- A token is pushed to a meter by one command at a time, and never again once
-- one has credited it: only a failed command's token may be sent again by a
-- later command (a top-up's next round, billing/topups.sql, which carries the
-- failed command's progress so a credit it made is recognised; the meter
-- itself refuses a token it has taken).
CREATE UNIQUE INDEX meter_commands_token_once ON flows.meter_commands (meter_id, (parameters ->> 'token'))
    WHERE kind = 'send_token' AND parameters ? 'token' AND status <> 'failed';
-- Claiming looks at what is due or whose lease ran out.
CREATE INDEX meter_commands_due_idx ON flows.meter_commands (run_at) WHERE status = 'pending';
CREATE INDEX meter_commands_running_idx ON flows.meter_commands (meter_id, lease_expires_at) WHERE status = 'running';
CREATE INDEX meter_commands_meter_idx ON flows.meter_commands (meter_id, created_at);
CREATE INDEX meter_commands_batch_idx ON flows.meter_commands (batch_id) WHERE batch_id IS NOT NULL;

CREATE TRIGGER meter_commands_touch BEFORE UPDATE ON flows.meter_commands
    FOR EACH ROW EXECUTE FUNCTION flows.touch_updated_at();


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
-- reach the meter and what kind of meter it is (flows.hardware_kinds).
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
CREATE FUNCTION flows.renew_meter_command_leases_v1(p_worker text, p_ids uuid[], p_attempts integer[],
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
CREATE FUNCTION flows.note_meter_command_progress_v1(p_id uuid, p_worker text, p_attempt integer, p_progress jsonb)
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
-- transaction behind the fence. p_outcome keys (all optional; the worker
-- builds it as flows.worker.outcome.Outcome, which mirrors this list):
--   states: [meter state objects (flows.meter_state), see flows.record_meter_states]
--   intervals: {register_ids, timestamps, import_kwh, export_kwh, source}
--   events: {timestamps, event_types, event_sets}
--   meter: {hardware, firmware_version}   -- what the meter says it is
--   result: what the API shows as the command's result
CREATE FUNCTION flows.finish_meter_command_v1(p_id uuid, p_worker text, p_attempt integer, p_outcome jsonb)
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
COMMENT ON FUNCTION flows.finish_meter_command_v1(uuid, text, integer, jsonb) IS
    'Records a command''s outcome (states, half hours, events) and marks it done, if the worker still holds it.';


-- A failed attempt. Retryable errors (meter unreachable, damaged frames) go
-- back to pending with exponential backoff (from p_backoff) until max_attempts; a final error
-- (the meter refused: NAK, a token rejected) fails at once. Either way the
-- meter is marked unhealthy with the reason.
CREATE FUNCTION flows.fail_meter_command_v1(p_id uuid, p_worker text, p_attempt integer, p_error text,
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
CREATE FUNCTION flows.release_meter_command_v1(p_id uuid, p_worker text, p_attempt integer)
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


-- Commands waiting and running, all ESCOs (the workers' queue-depth metric).
CREATE FUNCTION flows.meter_command_queue_depth_v1(OUT pending bigint, OUT running bigint)
LANGUAGE sql STABLE
SET search_path = ''
BEGIN ATOMIC
    SELECT count(*) FILTER (WHERE c.status = 'pending'), count(*) FILTER (WHERE c.status = 'running')
    FROM flows.meter_commands AS c
    WHERE c.status IN ('pending', 'running');
END;
