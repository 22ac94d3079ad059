-- Building blocks of the circuit and site aggregates. A register counts for a
-- circuit from start_time to end_time (circuit_register). Each range is split
-- into the coarsest pieces the rollups can answer exactly:
--   whole UK months inside the range   -> register_interval_monthly
--   whole UK days inside the range     -> register_interval_daily
--   part-days where a range starts or ends mid-day -> register_interval_hh
-- so a year of monthly totals reads a few hundred rollup rows, not every half
-- hour, and stays exact when a register moves circuit mid-day.

CREATE VIEW flows.circuit_ranges WITH (security_invoker = true) AS
SELECT cr.circuit AS circuit_id, c.site AS site_id, cr.register AS register_id,
       cr.start_time, coalesce(cr.end_time, 'infinity') AS end_time,
       -- midnight (UK) at or before the start / end
       flows.uk_day_start(flows.uk_day(cr.start_time)) AS start_midnight,
       flows.uk_day_start(flows.uk_day(cr.end_time)) AS end_midnight
FROM flows.circuit_register AS cr
JOIN flows.circuits AS c ON c.id = cr.circuit;
COMMENT ON VIEW flows.circuit_ranges IS 'circuit_register ranges with their circuit''s site and UK day edges.';

-- Half hours in the part-days at either edge of a range. Each range looks up
-- its own few half hours (LATERAL ... OFFSET 0 keeps that an index lookup per
-- range; unfenced, the planner may scan every half hour for ranges that have
-- no edges at all).
CREATE VIEW flows.circuit_edge_half_hours WITH (security_invoker = true) AS
SELECT r.circuit_id, r.site_id, h."timestamp", h.import_kwh, h.export_kwh
FROM flows.circuit_ranges AS r
CROSS JOIN LATERAL (
    SELECT x."timestamp", x.import_kwh, x.export_kwh
    FROM flows.register_interval_hh AS x
    WHERE x.register_id = r.register_id
      AND x."timestamp" >= r.start_time
      AND x."timestamp" < least(r.end_time, flows.uk_day_start(flows.uk_day(r.start_time) + 1))
    OFFSET 0
) AS h
WHERE r.start_time <> r.start_midnight
UNION ALL
SELECT r.circuit_id, r.site_id, h."timestamp", h.import_kwh, h.export_kwh
FROM flows.circuit_ranges AS r
CROSS JOIN LATERAL (
    SELECT x."timestamp", x.import_kwh, x.export_kwh
    FROM flows.register_interval_hh AS x
    WHERE x.register_id = r.register_id
      AND x."timestamp" >= greatest(r.end_midnight, r.start_time)
      AND x."timestamp" < r.end_time
    OFFSET 0
) AS h
WHERE r.end_time <> r.end_midnight
  -- unless the first branch already covered it (a range inside one part-day)
  AND (r.start_time = r.start_midnight OR flows.uk_day(r.end_time) <> flows.uk_day(r.start_time));
COMMENT ON VIEW flows.circuit_edge_half_hours IS 'Half hours of the part-days where circuit ranges start or end.';

-- Per circuit and UK day: whole days from the daily rollup, plus edges.
CREATE VIEW flows.circuit_daily_parts WITH (security_invoker = true) AS
SELECT r.circuit_id, r.site_id, d.day, d.import_kwh, d.export_kwh
FROM flows.circuit_ranges AS r
JOIN flows.register_interval_daily AS d
  ON d.register_id = r.register_id
 AND d.day >= flows.uk_day(r.start_time)
 AND flows.uk_day_start(d.day) >= r.start_time
 AND flows.uk_day_start(d.day + 1) <= r.end_time
UNION ALL
SELECT e.circuit_id, e.site_id, flows.uk_day(e."timestamp"), e.import_kwh, e.export_kwh
FROM flows.circuit_edge_half_hours AS e;
COMMENT ON VIEW flows.circuit_daily_parts IS 'Pieces of circuit energy that sum to exact UK-day totals.';

-- Per circuit and UK month: whole months from the monthly rollup; whole days
-- of the months where a range starts or ends mid-month; plus edges.
CREATE VIEW flows.circuit_monthly_parts WITH (security_invoker = true) AS
SELECT r.circuit_id, r.site_id, m.month, m.import_kwh, m.export_kwh
FROM flows.circuit_ranges AS r
JOIN flows.register_interval_monthly AS m
  ON m.register_id = r.register_id
 AND m.month >= flows.uk_month(flows.uk_day(r.start_time))
 AND flows.uk_day_start(m.month) >= r.start_time
 AND flows.uk_day_start((m.month + interval '1 month')::date) <= r.end_time
UNION ALL
SELECT r.circuit_id, r.site_id, edge.month, d.import_kwh, d.export_kwh
FROM flows.circuit_ranges AS r
CROSS JOIN LATERAL (VALUES
    -- the month the range starts in, unless the range covers all of it
    (flows.uk_month(flows.uk_day(r.start_time)), r.start_time),
    -- the month the range ends in (closed ranges), if another one and not covered whole
    (CASE WHEN r.end_time < 'infinity'
          THEN flows.uk_month(flows.uk_day(r.end_time - interval '1 microsecond')) END, r.end_time)
) AS edge (month, moment)
CROSS JOIN LATERAL (
    SELECT x.import_kwh, x.export_kwh
    FROM flows.register_interval_daily AS x
    WHERE x.register_id = r.register_id
      AND x.day >= edge.month
      AND x.day < (edge.month + interval '1 month')::date
      AND flows.uk_day_start(x.day) >= r.start_time
      AND flows.uk_day_start(x.day + 1) <= r.end_time
    OFFSET 0
) AS d
WHERE edge.month IS NOT NULL
  AND NOT (flows.uk_day_start(edge.month) >= r.start_time
           AND flows.uk_day_start((edge.month + interval '1 month')::date) <= r.end_time)
  AND (edge.moment = r.start_time
       OR edge.month <> flows.uk_month(flows.uk_day(r.start_time)))
UNION ALL
SELECT e.circuit_id, e.site_id, flows.uk_month(flows.uk_day(e."timestamp")), e.import_kwh, e.export_kwh
FROM flows.circuit_edge_half_hours AS e;
COMMENT ON VIEW flows.circuit_monthly_parts IS 'Pieces of circuit energy that sum to exact UK-month totals.';

-- Registers behind each property: property -> service heads -> meters -> registers.
CREATE VIEW flows.property_registers WITH (security_invoker = true) AS
SELECT DISTINCT psh.property AS property_id, r.register_id
FROM flows.properties_service_head AS psh
JOIN flows.service_head_meter AS shm ON shm.service_head = psh.service_head
JOIN flows.meter_registers AS r ON r.meter_id = shm.meter;
COMMENT ON VIEW flows.property_registers IS 'Registers of the meters behind each property''s service heads.';
