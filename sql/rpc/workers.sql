-- Worker processes, for administrators: list them (/workers) and drain one
-- (/rpc/drain_worker). `flows workers list | drain` reads and calls the same.

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
