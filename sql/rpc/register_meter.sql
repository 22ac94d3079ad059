-- Registers a meter and its registers in one call. Registers default from the
-- hardware: C1.w (twin element) gets A and B, everything else one SINGLE.
-- Returns the meter (api.meter_registry columns) with its meter_registers.
CREATE FUNCTION api.register_meter(
    serial                              text,
    name                                text DEFAULT NULL,
    ip_address                          inet DEFAULT NULL,
    hardware                            text DEFAULT NULL,
    emop_port                           integer DEFAULT 8080,
    site                                uuid DEFAULT NULL,
    mode                                text DEFAULT 'active',
    prepay_enabled                      boolean DEFAULT true,
    daylight_savings_correction_enabled boolean DEFAULT false,
    single_meter_app                    boolean DEFAULT false,
    iccid                               text DEFAULT NULL,
    installation_status                 text DEFAULT NULL,
    esco                                uuid DEFAULT NULL,
    registers                           jsonb DEFAULT NULL
) RETURNS jsonb
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    meter flows.meter_registry;
    register jsonb;
BEGIN
    IF registers IS NULL THEN
        registers := CASE WHEN hardware = 'C1.w'
                          THEN '[{"element": "A"}, {"element": "B"}]'::jsonb
                          ELSE '[{"element": "SINGLE"}]'::jsonb END;
    ELSIF pg_catalog.jsonb_typeof(registers) <> 'array' OR pg_catalog.jsonb_array_length(registers) = 0 THEN
        RAISE EXCEPTION 'registers must be a non-empty JSON array, e.g. [{"element": "A"}, {"element": "B"}]'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    INSERT INTO flows.meter_registry AS m (
        serial, name, ip_address, emop_port, hardware, mode, esco, site, prepay_enabled,
        daylight_savings_correction_enabled, single_meter_app, iccid, installation_status)
    VALUES (
        register_meter.serial, register_meter.name, register_meter.ip_address, register_meter.emop_port,
        register_meter.hardware, register_meter.mode, coalesce(register_meter.esco, flows.current_esco_id()),
        register_meter.site, register_meter.prepay_enabled, register_meter.daylight_savings_correction_enabled,
        register_meter.single_meter_app, register_meter.iccid, register_meter.installation_status)
    RETURNING m.* INTO meter;

    FOR register IN SELECT pg_catalog.jsonb_array_elements(registers) LOOP
        IF pg_catalog.jsonb_typeof(register) <> 'object'
           OR EXISTS (SELECT FROM pg_catalog.jsonb_object_keys(register) AS k
                      WHERE k NOT IN ('element', 'nature', 'direction_reversed', 'start_time', 'notes')) THEN
            RAISE EXCEPTION 'each register is an object with element and optionally nature, direction_reversed, '
                            'start_time, notes; got %', register
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        INSERT INTO flows.meter_registers (meter_id, esco, element, nature, direction_reversed, start_time, notes)
        VALUES (meter.id, meter.esco, register ->> 'element', coalesce(register ->> 'nature', 'power'),
                coalesce((register ->> 'direction_reversed')::boolean, false),
                coalesce((register ->> 'start_time')::timestamptz, meter.created_at), register ->> 'notes');
    END LOOP;

    RETURN (SELECT pg_catalog.to_jsonb(v) FROM api.meter_registry AS v WHERE v.id = meter.id)
        || pg_catalog.jsonb_build_object('meter_registers', (
               SELECT pg_catalog.jsonb_agg(pg_catalog.to_jsonb(r) ORDER BY r.element)
               FROM api.meter_registers AS r WHERE r.meter_id = meter.id));
END
$$;
COMMENT ON FUNCTION api.register_meter IS
    'Registers a meter with its registers (default: A and B for C1.w hardware, else SINGLE). '
    'Returns the meter with its meter_registers.';
