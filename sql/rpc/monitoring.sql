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
