-- Active meters for command-line tools, optionally narrowed to an ESCO and
-- a feeder. feeder_filter 'null' (the string) means "meters on no feeder".
CREATE FUNCTION api.get_meters_for_cli(esco_filter text DEFAULT NULL, feeder_filter text DEFAULT NULL)
RETURNS TABLE (
    id               uuid,
    ip_address       inet,
    serial           text,
    name             text,
    single_meter_app boolean,
    esco             text,
    csq              integer,
    health           text,
    hardware         text,
    feeder           text
)
LANGUAGE sql STABLE
SET search_path = ''
AS $$
    SELECT
        m.id,
        m.ip_address,
        m.serial,
        m.name,
        m.single_meter_app,
        e.code,
        NULL::integer,
        NULL::text,
        m.hardware,
        NULL::text
    FROM flows.meter_registry AS m
    JOIN flows.escos AS e ON e.id = m.esco
    WHERE m.mode = 'active'
      AND (esco_filter IS NULL OR e.code = esco_filter)
      AND (feeder_filter IS NULL OR feeder_filter = 'null')
    ORDER BY e.code, m.serial
$$;
COMMENT ON FUNCTION api.get_meters_for_cli(text, text) IS
    'Active meters with what the CLI needs to reach them. esco_filter: ESCO code; '
    'feeder_filter: feeder name, or ''null'' for meters on no feeder.';
