-- 0004_monitoring_and_aggregates: Monitoring views; circuit, property and site aggregates.

-- Everything below is created by, and owned by, flows_owner.
SET LOCAL ROLE flows_owner;

-- ---- schema/energy_parts.sql ----
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

-- ---- rpc/monitoring.sql ----
-- What operators watch: credit running out, meters not answering, clocks
-- drifting, half hours missing.

CREATE VIEW api.meters_low_balance WITH (security_invoker = true) AS
SELECT m.id, m.serial, m.name, m.esco, s.balance, s.emergency_credit, s.balance_updated_at,
       e.low_balance_threshold AS threshold
FROM flows.meter_registry AS m
JOIN flows.meter_shadows AS s ON s.id = m.id
JOIN flows.escos AS e ON e.id = m.esco
WHERE m.prepay_enabled AND s.balance < e.low_balance_threshold;
COMMENT ON VIEW api.meters_low_balance IS
    'Prepay meters whose balance is under their ESCO''s low_balance_threshold (GBP 15 unless changed).';

CREATE VIEW api.meters_offline_all WITH (security_invoker = true) AS
SELECT m.id, m.serial, m.name, m.esco, s.last_healthy_at AS last_online, s.health, s.health_details
FROM flows.meter_registry AS m
JOIN flows.meter_shadows AS s ON s.id = m.id
WHERE m.mode = 'active'
  AND (s.last_healthy_at IS NULL OR s.last_healthy_at < now() - interval '3 hours');
COMMENT ON VIEW api.meters_offline_all IS
    'Active meters not successfully contacted for over 3 hours (last_online null: never).';

CREATE VIEW api.meters_offline_recently WITH (security_invoker = true) AS
SELECT m.id, m.serial, m.name, m.esco, s.last_healthy_at AS last_online, s.health, s.health_details
FROM flows.meter_registry AS m
JOIN flows.meter_shadows AS s ON s.id = m.id
WHERE m.mode = 'active'
  AND s.last_healthy_at BETWEEN now() - interval '24 hours' AND now() - interval '3 hours';
COMMENT ON VIEW api.meters_offline_recently IS 'Active meters last contacted between 3 and 24 hours ago.';

CREATE VIEW api.meters_clock_drift WITH (security_invoker = true) AS
SELECT m.id, m.serial, m.name, m.esco, s.clock_time_diff_seconds, s.clock_checked_at
FROM flows.meter_registry AS m
JOIN flows.meter_shadows AS s ON s.id = m.id
WHERE abs(s.clock_time_diff_seconds) >= 60;
COMMENT ON VIEW api.meters_clock_drift IS 'Meters whose clock is a minute or more off the server clock.';

-- Per register and UK day (from the register's start to yesterday): half
-- hours expected (48; 46 or 50 when the clocks change; fewer on the days a
-- register starts or ends) and present.
CREATE VIEW api.register_interval_hh_missing WITH (security_invoker = true) AS
SELECT r.register_id, r.meter_id, d.day, x.expected, coalesce(rd.intervals, 0) AS present,
       x.expected - coalesce(rd.intervals, 0) AS missing
FROM flows.meter_registers AS r
CROSS JOIN LATERAL generate_series(
    flows.uk_day(r.start_time)::timestamp,
    least(flows.uk_day(r.end_time - interval '1 microsecond'), flows.uk_day(now()) - 1)::timestamp,
    interval '1 day') AS g (day_start)
CROSS JOIN LATERAL (SELECT g.day_start::date AS day) AS d
CROSS JOIN LATERAL (
    -- half hours of the day from the first one at or after start_time, to end_time
    SELECT greatest(flows.uk_day_start(d.day),
                    date_bin('30 minutes', r.start_time - interval '1 microsecond', 'epoch') + interval '30 minutes')
               AS counted_from,
           least(flows.uk_day_start(d.day + 1), coalesce(r.end_time, 'infinity')) AS counted_to
) AS w
CROSS JOIN LATERAL (SELECT ceil(extract(epoch FROM w.counted_to - w.counted_from) / 1800)::integer AS expected) AS x
LEFT JOIN flows.register_interval_daily AS rd ON rd.register_id = r.register_id AND rd.day = d.day
WHERE x.expected > 0;
COMMENT ON VIEW api.register_interval_hh_missing IS
    'Half hours expected and present per register and UK day, up to yesterday (48; 46/50 on clock-change '
    'days; fewer where a register starts or ends). Filter by register_id and day.';

-- ---- rpc/aggregates.sql ----
-- Energy per circuit, property and site, per half hour, UK day and UK month.
-- Circuit and site figures honour circuit_register ranges (a register counts
-- for a circuit only while it is assigned to it); property figures sum the
-- registers of the meters behind the property's service heads. Energy not
-- measured (e.g. export on an import-only meter) counts as 0, as in the rollups.

CREATE VIEW api.circuit_interval_hh WITH (security_invoker = true) AS
SELECT r.circuit_id, h."timestamp", coalesce(sum(h.import_kwh), 0) AS import_kwh, coalesce(sum(h.export_kwh), 0) AS export_kwh
FROM flows.circuit_ranges AS r
JOIN flows.register_interval_hh AS h
  ON h.register_id = r.register_id AND h."timestamp" >= r.start_time AND h."timestamp" < r.end_time
GROUP BY r.circuit_id, h."timestamp";
COMMENT ON VIEW api.circuit_interval_hh IS 'Energy (kWh) per circuit and half hour (UTC start).';

CREATE VIEW api.circuit_interval_daily WITH (security_invoker = true) AS
SELECT circuit_id, day, coalesce(sum(import_kwh), 0) AS import_kwh, coalesce(sum(export_kwh), 0) AS export_kwh
FROM flows.circuit_daily_parts
GROUP BY circuit_id, day;
COMMENT ON VIEW api.circuit_interval_daily IS 'Energy (kWh) per circuit and UK day.';

CREATE VIEW api.circuit_interval_monthly WITH (security_invoker = true) AS
SELECT circuit_id, month, coalesce(sum(import_kwh), 0) AS import_kwh, coalesce(sum(export_kwh), 0) AS export_kwh
FROM flows.circuit_monthly_parts
GROUP BY circuit_id, month;
COMMENT ON VIEW api.circuit_interval_monthly IS 'Energy (kWh) per circuit and UK month (month = its first day).';

CREATE VIEW api.site_interval_hh WITH (security_invoker = true) AS
SELECT r.site_id, h."timestamp", coalesce(sum(h.import_kwh), 0) AS import_kwh, coalesce(sum(h.export_kwh), 0) AS export_kwh
FROM flows.circuit_ranges AS r
JOIN flows.register_interval_hh AS h
  ON h.register_id = r.register_id AND h."timestamp" >= r.start_time AND h."timestamp" < r.end_time
GROUP BY r.site_id, h."timestamp";
COMMENT ON VIEW api.site_interval_hh IS 'Energy (kWh) per site and half hour: the sum of its circuits.';

CREATE VIEW api.site_interval_daily WITH (security_invoker = true) AS
SELECT site_id, day, coalesce(sum(import_kwh), 0) AS import_kwh, coalesce(sum(export_kwh), 0) AS export_kwh
FROM flows.circuit_daily_parts
GROUP BY site_id, day;
COMMENT ON VIEW api.site_interval_daily IS 'Energy (kWh) per site and UK day: the sum of its circuits.';

CREATE VIEW api.site_interval_monthly WITH (security_invoker = true) AS
SELECT site_id, month, coalesce(sum(import_kwh), 0) AS import_kwh, coalesce(sum(export_kwh), 0) AS export_kwh
FROM flows.circuit_monthly_parts
GROUP BY site_id, month;
COMMENT ON VIEW api.site_interval_monthly IS 'Energy (kWh) per site and UK month: the sum of its circuits.';

CREATE VIEW api.property_interval_hh WITH (security_invoker = true) AS
SELECT p.property_id, h."timestamp", coalesce(sum(h.import_kwh), 0) AS import_kwh, coalesce(sum(h.export_kwh), 0) AS export_kwh
FROM flows.property_registers AS p
JOIN flows.register_interval_hh AS h ON h.register_id = p.register_id
GROUP BY p.property_id, h."timestamp";
COMMENT ON VIEW api.property_interval_hh IS 'Energy (kWh) per property and half hour.';

CREATE VIEW api.property_interval_daily WITH (security_invoker = true) AS
SELECT p.property_id, d.day, coalesce(sum(d.import_kwh), 0) AS import_kwh, coalesce(sum(d.export_kwh), 0) AS export_kwh
FROM flows.property_registers AS p
JOIN flows.register_interval_daily AS d ON d.register_id = p.register_id
GROUP BY p.property_id, d.day;
COMMENT ON VIEW api.property_interval_daily IS 'Energy (kWh) per property and UK day.';

CREATE VIEW api.property_interval_monthly WITH (security_invoker = true) AS
SELECT p.property_id, m.month, coalesce(sum(m.import_kwh), 0) AS import_kwh, coalesce(sum(m.export_kwh), 0) AS export_kwh
FROM flows.property_registers AS p
JOIN flows.register_interval_monthly AS m ON m.register_id = p.register_id
GROUP BY p.property_id, m.month;
COMMENT ON VIEW api.property_interval_monthly IS 'Energy (kWh) per property and UK month.';

-- ---- rls/privileges.sql: Monitoring and aggregates ----
GRANT SELECT ON
    api.meters_low_balance, api.meters_offline_all, api.meters_offline_recently, api.meters_clock_drift,
    api.register_interval_hh_missing,
    flows.circuit_ranges, flows.circuit_edge_half_hours, flows.circuit_daily_parts, flows.circuit_monthly_parts,
    api.circuit_interval_hh, api.circuit_interval_daily, api.circuit_interval_monthly,
    api.site_interval_hh, api.site_interval_daily, api.site_interval_monthly
TO flows_admin, flows_operator, flows_analyst, flows_service;
GRANT SELECT ON
    flows.property_registers,
    api.property_interval_hh, api.property_interval_daily, api.property_interval_monthly
TO flows_admin, flows_operator, flows_analyst, flows_service, flows_customer;
