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
        CHECK (kind IN ('sync', 'send_token', 'set_future_tariff', 'read_profile_log', 'set_clock', 'emop_session')),
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
-- Operators' emop sessions under way or waiting (sql/schema/emop_sessions.sql): few, looked at by every claim.
CREATE INDEX meter_commands_emop_session_idx ON flows.meter_commands (updated_at)
    WHERE kind = 'emop_session' AND status IN ('pending', 'running');

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


-- Which commands go first on a meter: a top-up (a customer is waiting for
-- credit), then an operator's emop session (someone is at the console), then
-- everything else. Long work (profile-log backfills, event-log reads, tariff
-- writes) runs in steps and gives the meter up between steps to a command
-- that goes before it (flows.step_meter_command_v1).
CREATE FUNCTION flows.command_priority(p_kind text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE p_kind WHEN 'send_token' THEN 0 WHEN 'emop_session' THEN 1 ELSE 2 END;

-- Pending commands that go before ordinary work (priority below 2: top-ups and
-- emop sessions), by meter: the few flows.commands_waited_for_v1 looks at.
CREATE INDEX meter_commands_first_idx ON flows.meter_commands (meter_id)
    WHERE status = 'pending' AND flows.command_priority(kind) < 2;

-- How long an operator's emop session waits for a meter without its holder
-- asking again (the emop CLI asks every second while it waits).
CREATE FUNCTION flows.emop_session_patience() RETURNS interval
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN interval '30 seconds';

-- Commands nobody will finish: a lease that ran out after the last attempt
-- (a worker died on its final chance) fails, saying so; an emop session whose
-- holder stopped renewing its lease fails, and one whose holder stopped
-- waiting is cancelled. Called by every claim.
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

-- Claims up to p_limit due commands for worker p_worker, leased for
-- p_lease: at most one per meter, never for a meter that already has a
-- running command with a live lease, within each ESCO's limit of running
-- commands, and within the global limit: the setting
-- flows.max_running_commands (e.g. ALTER DATABASE flows SET
-- flows.max_running_commands = 300; unset: no limit), for what the network to
-- the meters can carry. Top-ups go first (a customer is waiting for credit),
-- then the oldest due. Claims are serialised (one advisory lock), which makes those
-- checks exact; a claim takes milliseconds. Only the commands chosen are
-- locked (one an operator cancelled meanwhile drops out): a queue longer
-- than the free slots is read, not written, by each claim.
-- Returns what the worker needs to reach the meter and what kind of meter it
-- is (flows.hardware_kinds).
--
-- A worker registered in flows.workers claims nothing once it is draining or
-- stopped, and only commands of the ESCOs it serves (every ESCO when it names
-- none; an unregistered worker serves every ESCO). A meter whose first command
-- is an operator's emop session is left free for the operator. Order on each
-- meter and across them: flows.command_priority, then the oldest due.
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
    WITH due AS MATERIALIZED (  -- read once by its indexes, whatever the statistics say of a queue just filled
        SELECT c.id, c.meter_id, c.esco, c.kind, c.run_at, c.created_at, c.status = 'running' AS orphaned,
               flows.command_priority(c.kind) AS priority
        FROM flows.meter_commands AS c
        WHERE (c.status = 'pending' AND c.run_at <= pg_catalog.now())
           OR (c.status = 'running' AND c.lease_expires_at < pg_catalog.now())
    ),
    busy AS (  -- meters with a live command
        SELECT DISTINCT r.meter_id
        FROM flows.meter_commands AS r
        WHERE r.status = 'running' AND r.lease_expires_at >= pg_catalog.now()
    ),
    room AS MATERIALIZED (  -- per ESCO, how many more may run (counted once, whatever the plan)
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
    ),
    locked AS (  -- still due once locked (a row changed meanwhile is read again as it is now)
        SELECT c.id
        FROM flows.meter_commands AS c
        JOIN chosen AS ch ON ch.id = c.id
        WHERE (c.status = 'pending' AND c.run_at <= pg_catalog.now())
           OR (c.status = 'running' AND c.lease_expires_at < pg_catalog.now())
        FOR UPDATE OF c SKIP LOCKED
    )
    UPDATE flows.meter_commands AS c
    SET status = 'running',
        attempts = c.attempts + 1,
        lease_owner = p_worker,
        lease_expires_at = pg_catalog.now() + p_lease,
        started_at = coalesce(c.started_at, pg_catalog.now())
    FROM locked AS ch, flows.meter_registry AS m, flows.escos AS e
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

-- The release before workers registered (0010): claims as an unregistered worker.
CREATE FUNCTION flows.claim_meter_commands_v1(p_worker text, p_limit integer, p_lease interval DEFAULT '2 minutes')
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


-- Records what commands observed on their meters: meter states, half hours,
-- events and what the meter says it is, for many commands at once (parallel
-- arrays: the command's meter, its outcome). p_contact: the meter answered
-- and the command is over, so the meter is healthy as of the last state
-- observed (else now). Outcome keys (all optional; the worker builds them as
-- flows.worker.outcome.Outcome, which mirrors this list):
--   states: [meter state objects (flows.meter_state), see flows.record_meter_states]
--   intervals: {register_ids, timestamps, import_kwh, export_kwh, source}
--   events: {timestamps, event_types, event_sets}
--   meter: {hardware, firmware_version}   -- what the meter says it is
--   result: what the API shows as the command's result (read by the finishing functions)
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

-- Wakes the workers for the due commands of these meters (say, a top-up that
-- waited while a sync held its meter): NOTIFY as for new commands.
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

-- Finishes many commands of one worker at once: records what each observed
-- (flows.record_command_outcomes), marks each meter healthy and each command
-- done with its result, all in one transaction. p_finished: [{id, attempt,
-- outcome}]. The fence for the whole batch: a command the worker no longer
-- holds at the attempt it claimed is left alone, and its id returned (the
-- worker discards its result). Then wakes the workers for what waited on
-- these meters.
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

-- One command, as the release before 0010 finishes it: FL409 when the worker
-- no longer holds it.
CREATE FUNCTION flows.finish_meter_command_v1(p_id uuid, p_worker text, p_attempt integer, p_outcome jsonb)
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
COMMENT ON FUNCTION flows.finish_meter_command_v1(uuid, text, integer, jsonb) IS
    'Records a command''s outcome (states, half hours, events) and marks it done, if the worker still holds it.';


-- Whether p_waiting, a command for the same meter, goes before work of kind
-- p_kind now (flows.command_priority): it is pending and due, and if it is an
-- operator's emop session, its holder is still asking for it.
CREATE FUNCTION flows.goes_before(p_waiting flows.meter_commands, p_kind text) RETURNS boolean
LANGUAGE sql STABLE
RETURN p_waiting.status = 'pending' AND p_waiting.run_at <= pg_catalog.now()
   AND flows.command_priority(p_waiting.kind) < flows.command_priority(p_kind)
   AND (p_waiting.kind <> 'emop_session' OR p_waiting.updated_at >= pg_catalog.now() - flows.emop_session_patience());

-- A command that goes before p_command on its meter: a top-up, or an emop
-- session whose holder is still waiting.
CREATE FUNCTION flows.command_waiting_before(p_command flows.meter_commands) RETURNS uuid
LANGUAGE sql STABLE
SET search_path = ''
BEGIN ATOMIC
    SELECT c.id FROM flows.meter_commands AS c
    WHERE c.meter_id = p_command.meter_id AND flows.goes_before(c, p_command.kind)
    ORDER BY flows.command_priority(c.kind), c.created_at
    LIMIT 1;
END;

-- The commands worker p_worker runs that should give their meter up now: a
-- command that goes before them waits for it. The worker asks whenever it is
-- woken (a NOTIFY of new commands) and at each poll, and hands those commands
-- back at their next exchange (flows.step_meter_command_v1). Cheap when
-- nothing waits: it looks at the few pending top-ups and emop sessions only.
CREATE FUNCTION flows.commands_waited_for_v1(p_worker text) RETURNS uuid[]
LANGUAGE sql STABLE
SET search_path = ''
BEGIN ATOMIC
    SELECT coalesce(array_agg(DISTINCT r.id), '{}')
    FROM flows.meter_commands AS w
    JOIN flows.meter_commands AS r ON r.meter_id = w.meter_id AND r.status = 'running' AND r.lease_owner = p_worker
    WHERE w.status = 'pending' AND flows.command_priority(w.kind) < 2 AND flows.goes_before(w, r.kind);
END;

-- Hands a held command back: pending again, the attempt not counted, the
-- lease cleared (its progress kept), and the workers woken to take it again.
CREATE FUNCTION flows.hand_back_meter_command(p_id uuid) RETURNS void
LANGUAGE sql
SET search_path = ''
BEGIN ATOMIC
    UPDATE flows.meter_commands AS c
    SET status = 'pending', attempts = c.attempts - 1, lease_owner = NULL, lease_expires_at = NULL
    WHERE c.id = p_id;
    SELECT pg_catalog.pg_notify('flows_meter_commands', p_id::text);
END;

-- The end of one step of long work (a profile-log backfill, an event-log read,
-- tariff writes): records what the step observed (states, half hours, events;
-- the meter is not marked healthy until the command finishes) and how far the
-- command got (p_progress, merged), behind the fence. Then, when the worker
-- is stopping (p_stop) or a command that goes before this one waits for the
-- meter (a top-up: flows.command_waiting_before), hands the command back to
-- be resumed from its progress (pending, attempt not counted) and wakes the
-- workers. Returns continue, yielded (to the waiting command) or released.
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


-- A worker that stops (shutdown) hands back what it has not finished:
-- pending again, the attempt not counted, and another worker woken for it.
CREATE FUNCTION flows.release_meter_command_v1(p_id uuid, p_worker text, p_attempt integer)
RETURNS void
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    PERFORM flows.fence_meter_command(p_id, p_worker, p_attempt);
    PERFORM flows.hand_back_meter_command(p_id);
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
