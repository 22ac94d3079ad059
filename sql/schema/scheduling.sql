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

-- Called when sync commands finish: these metrics (null: all) of these
-- meters were read now (parallel arrays; a meter may come twice).
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
-- read queued or run for that meter since the day ended. Three-phase meters
-- too: the worker reads their interval profile (format 0x14).
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
CREATE FUNCTION flows.run_scheduler_v1() RETURNS jsonb
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
COMMENT ON FUNCTION flows.run_scheduler_v1() IS
    'One scheduler pass: half hours estimated from new reads, due syncs, tariff follow-ups, '
    'profile-log gap reads, partitions ahead.';
