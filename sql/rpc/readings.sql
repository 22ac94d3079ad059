CREATE VIEW api.register_import WITH (security_invoker = true) AS
SELECT register_id, "timestamp", read
FROM flows.register_import;
COMMENT ON VIEW api.register_import IS 'Every cumulative import read (kWh) taken from a register.';

CREATE VIEW api.register_export WITH (security_invoker = true) AS
SELECT register_id, "timestamp", read
FROM flows.register_export;
COMMENT ON VIEW api.register_export IS 'Every cumulative export read (kWh) taken from a register.';

CREATE VIEW api.register_interval_hh WITH (security_invoker = true) AS
SELECT register_id, "timestamp", import_kwh, export_kwh, source
FROM flows.register_interval_hh;
COMMENT ON VIEW api.register_interval_hh IS
    'Energy (kWh) per half hour from timestamp (UTC, :00 or :30). source: profile_log (the meter''s own log) or reads.';

CREATE VIEW api.register_interval_daily WITH (security_invoker = true) AS
SELECT register_id, day, import_kwh, export_kwh, intervals
FROM flows.register_interval_daily;
COMMENT ON VIEW api.register_interval_daily IS
    'Energy (kWh) per register and UK day; intervals = half hours present (48, or 46/50 on clock-change days).';

CREATE VIEW api.register_interval_monthly WITH (security_invoker = true) AS
SELECT register_id, month, import_kwh, export_kwh, intervals
FROM flows.register_interval_monthly;
COMMENT ON VIEW api.register_interval_monthly IS 'Energy (kWh) per register and UK month (month = its first day).';

-- Embedding a reading's register: ?select=*,meter_registers(meter_id,element).
-- The readings tables carry no foreign key (schema/readings.sql), so these
-- functions tell PostgREST the relationship (a "computed relationship").
CREATE FUNCTION api.meter_registers(api.register_import) RETURNS SETOF api.meter_registers ROWS 1
LANGUAGE sql STABLE
AS $$ SELECT * FROM api.meter_registers AS r WHERE r.register_id = $1.register_id $$;

CREATE FUNCTION api.meter_registers(api.register_export) RETURNS SETOF api.meter_registers ROWS 1
LANGUAGE sql STABLE
AS $$ SELECT * FROM api.meter_registers AS r WHERE r.register_id = $1.register_id $$;

CREATE FUNCTION api.meter_registers(api.register_interval_hh) RETURNS SETOF api.meter_registers ROWS 1
LANGUAGE sql STABLE
AS $$ SELECT * FROM api.meter_registers AS r WHERE r.register_id = $1.register_id $$;
COMMENT ON FUNCTION api.meter_registers(api.register_import) IS 'The register of an import read (for embedding).';
COMMENT ON FUNCTION api.meter_registers(api.register_export) IS 'The register of an export read (for embedding).';
COMMENT ON FUNCTION api.meter_registers(api.register_interval_hh) IS 'The register of a half hour (for embedding).';
