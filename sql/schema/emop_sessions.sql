-- An operator's direct session with a meter (the `emop` CLI with a database
-- configured), under the same per-meter lease as the workers' commands, so a
-- meter never has two EMOP sessions at once. The session is a command of kind
-- emop_session that no worker runs: the CLI opens it (pending), asks for it
-- until the meter is free (a worker finishing its command, or a long one
-- giving the meter up at its next step, flows.step_meter_command_v1), holds it
-- (running, its lease renewed while it talks to the meter) and closes it
-- (done or failed). Top-ups go first; ESCO and global limits do not apply to
-- one operator at a console. /meter_commands shows who talked to which meter.
-- A holder that disappears is covered: its running session's lease runs out,
-- and a session nobody asks for (flows.emop_session_patience) is cancelled, by
-- the next claim (flows.expire_meter_commands).

-- Opens a session with the meter of this serial for p_holder (the CLI's name
-- for itself, e.g. emop:alice@ops-1:4242), to do p_operation. Returns its id,
-- or null when no meter has this serial (the CLI then talks to it directly).
CREATE FUNCTION flows.open_emop_session(p_serial text, p_holder text, p_operation text) RETURNS uuid
LANGUAGE sql
SET search_path = ''
BEGIN ATOMIC
    INSERT INTO flows.meter_commands (esco, meter_id, kind, parameters, requested_by, max_attempts)
    SELECT m.esco, m.id, 'emop_session', pg_catalog.jsonb_build_object('operation', p_operation), p_holder, 1
    FROM flows.meter_registry AS m WHERE m.serial = p_serial
    RETURNING id;
END;

-- Asks for the session's meter: takes it when nothing holds the meter and no
-- top-up (or an operator who asked earlier) waits for it; renews the lease
-- when the session already holds it. Otherwise says what holds the meter
-- (kind, worker, since when, its progress) so the CLI can show it while it
-- waits. Raises FL409 when the session is over (cancelled, expired).
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

-- Closes the session: done (p_error null) or failed with p_error when it held
-- the meter, cancelled when it was still waiting; the lease is cleared and the
-- workers are woken for what waited on the meter. Returns the final status.
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
