-- The daily and monthly rollups of half hours (register_interval_daily and
-- _monthly), kept exact by whoever writes half hours (record_interval_hh);
-- with them the tails of the shadow ledger's days (flows.meter_ledger_days).

-- Adds newly recorded half hours to the daily and monthly rollups (UK days
-- and months), aggregated per register and day; p_estimated: derived from reads.
CREATE FUNCTION flows.add_to_interval_rollups(
    p_register_ids uuid[],
    p_timestamps   timestamptz[],
    p_import_kwh   numeric[],
    p_export_kwh   numeric[],
    p_estimated    boolean
) RETURNS void
LANGUAGE sql
SET search_path = ''
BEGIN ATOMIC
    WITH daily AS (
        SELECT x.register_id, flows.uk_day(x.ts) AS day, coalesce(sum(x.import_kwh), 0) AS import_kwh,
               coalesce(sum(x.export_kwh), 0) AS export_kwh, count(*) AS intervals
        FROM unnest(p_register_ids, p_timestamps, p_import_kwh, p_export_kwh) AS x (register_id, ts, import_kwh, export_kwh)
        GROUP BY 1, 2
    ),
    added_days AS (
        INSERT INTO flows.register_interval_daily AS d (register_id, day, import_kwh, export_kwh, intervals, estimated)
        SELECT daily.*, CASE WHEN p_estimated THEN daily.intervals ELSE 0 END FROM daily ORDER BY register_id, day
        ON CONFLICT (register_id, day) DO UPDATE
            SET import_kwh = d.import_kwh + excluded.import_kwh,
                export_kwh = d.export_kwh + excluded.export_kwh,
                intervals = d.intervals + excluded.intervals,
                estimated = d.estimated + excluded.estimated
    )
    INSERT INTO flows.register_interval_monthly AS m (register_id, month, import_kwh, export_kwh, intervals)
    SELECT register_id, flows.uk_month(day), sum(import_kwh), sum(export_kwh), sum(intervals)
    FROM daily GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (register_id, month) DO UPDATE
        SET import_kwh = m.import_kwh + excluded.import_kwh,
            export_kwh = m.export_kwh + excluded.export_kwh,
            intervals = m.intervals + excluded.intervals;
    -- The ledger's days whose last observation's tail the new half hours reach (a new half hour of the meter on
    -- the day, after its last observation's half hour began): recomputed. (Half hours estimated from reads end
    -- before the read, which comes with its balance: they do not.)
    SELECT flows.refresh_meter_ledger_days(array_agg(s.meter_id), array_agg(s.day))
    FROM (SELECT r.meter_id, flows.uk_day(x.ts) AS day, max(x.ts) AS latest
          FROM unnest(p_register_ids, p_timestamps) AS x (register_id, ts)
          JOIN flows.meter_registers AS r ON r.register_id = x.register_id
          GROUP BY 1, 2) AS b
    JOIN flows.meter_ledger_days AS s ON s.meter_id = b.meter_id AND s.day = b.day
    WHERE b.latest > s.last_at - interval '30 minutes';
END;


-- Recomputes the rollups of the UK days (and their months) that half hours
-- at p_timestamps fall on, from the half hours themselves.
CREATE FUNCTION flows.refresh_interval_rollups(p_register_ids uuid[], p_timestamps timestamptz[]) RETURNS void
LANGUAGE sql
SET search_path = ''
BEGIN ATOMIC
    INSERT INTO flows.register_interval_daily AS d (register_id, day, import_kwh, export_kwh, intervals, estimated)
    SELECT t.register_id, t.day, coalesce(sum(h.import_kwh), 0), coalesce(sum(h.export_kwh), 0), count(*),
           count(*) FILTER (WHERE h.source = 'reads')
    FROM (SELECT DISTINCT x.register_id, flows.uk_day(x.ts) AS day
          FROM unnest(p_register_ids, p_timestamps) AS x (register_id, ts)) AS t
    JOIN flows.register_interval_hh AS h
      ON h.register_id = t.register_id
     AND h."timestamp" >= flows.uk_day_start(t.day) AND h."timestamp" < flows.uk_day_start(t.day + 1)
    GROUP BY t.register_id, t.day
    ORDER BY t.register_id, t.day
    ON CONFLICT (register_id, day) DO UPDATE
        SET import_kwh = excluded.import_kwh, export_kwh = excluded.export_kwh, intervals = excluded.intervals,
            estimated = excluded.estimated;
    INSERT INTO flows.register_interval_monthly AS m (register_id, month, import_kwh, export_kwh, intervals)
    SELECT t.register_id, t.month, sum(d.import_kwh), sum(d.export_kwh), sum(d.intervals)
    FROM (SELECT DISTINCT x.register_id, flows.uk_month(flows.uk_day(x.ts)) AS month
          FROM unnest(p_register_ids, p_timestamps) AS x (register_id, ts)) AS t
    JOIN flows.register_interval_daily AS d
      ON d.register_id = t.register_id AND d.day >= t.month AND d.day < (t.month + interval '1 month')::date
    GROUP BY t.register_id, t.month
    ORDER BY t.register_id, t.month
    ON CONFLICT (register_id, month) DO UPDATE
        SET import_kwh = excluded.import_kwh, export_kwh = excluded.export_kwh, intervals = excluded.intervals;
    SELECT flows.refresh_meter_ledger_days(array_agg(s.meter_id), array_agg(s.day))
    FROM (SELECT DISTINCT x.register_id, flows.uk_day(x.ts) AS day
          FROM unnest(p_register_ids, p_timestamps) AS x (register_id, ts)) AS x
    JOIN flows.meter_registers AS r ON r.register_id = x.register_id
    JOIN flows.meter_ledger_days AS s ON s.meter_id = r.meter_id AND s.day = x.day;
END;
