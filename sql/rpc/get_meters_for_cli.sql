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
    SELECT m.id, m.ip_address, m.serial, m.name, m.single_meter_app, e.code, s.csq, s.health, m.hardware, f.name
    FROM flows.meter_registry AS m
    JOIN flows.escos AS e ON e.id = m.esco
    JOIN flows.meter_shadows AS s ON s.id = m.id
    LEFT JOIN LATERAL (
        SELECT fr.name
        FROM flows.service_head_meter AS shm
        JOIN flows.service_head_registry AS sh ON sh.id = shm.service_head
        JOIN flows.feeder_registry AS fr ON fr.id = sh.feeder
        WHERE shm.meter = m.id
        ORDER BY fr.name
        LIMIT 1
    ) AS f ON true
    WHERE m.mode = 'active'
      AND (esco_filter IS NULL OR e.code = esco_filter)
      AND (feeder_filter IS NULL
           OR (feeder_filter = 'null' AND f.name IS NULL)
           OR f.name = feeder_filter)
    ORDER BY e.code, m.serial
$$;
COMMENT ON FUNCTION api.get_meters_for_cli(text, text) IS
    'Active meters with what the CLI needs to reach them. esco_filter: ESCO code; '
    'feeder_filter: feeder name, or ''null'' for meters on no feeder.';
