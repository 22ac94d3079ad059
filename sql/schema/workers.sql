-- The workers: each `flows worker` process registers here when it starts,
-- beats every few seconds (in-flight commands, commands finished), and says
-- when it stops. Administrators see them (api.workers, `flows workers list`)
-- and drain one (api.drain_worker, `flows workers drain`): it stops claiming,
-- finishes or hands back what it holds, and exits. A worker may serve only
-- some ESCOs (`flows worker --esco CODE`); its claims take only their commands.
-- The name is what the worker writes in the leases it holds (lease_owner).

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
