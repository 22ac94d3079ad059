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
