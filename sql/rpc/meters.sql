CREATE VIEW api.meter_registry WITH (security_invoker = true) AS
SELECT
    id,
    serial,
    name,
    ip_address,
    emop_port,
    hardware,
    firmware_version,
    mode,
    esco,
    site,
    prepay_enabled,
    daylight_savings_correction_enabled,
    single_meter_app,
    iccid,
    installation_status,
    created_at,
    updated_at
FROM flows.meter_registry;
ALTER VIEW api.meter_registry ALTER COLUMN esco SET DEFAULT flows.current_esco_id();
COMMENT ON VIEW api.meter_registry IS
    'Meters and their configuration. POST to register a meter (or rpc/register_meter, which adds its registers).';
COMMENT ON COLUMN api.meter_registry.serial IS 'Emlite serial: EML + 10 digits, or EMP1AX/EMP1CX + digits (three phase).';
COMMENT ON COLUMN api.meter_registry.ip_address IS 'Address on the private 4G network.';
COMMENT ON COLUMN api.meter_registry.emop_port IS 'EMOP TCP port: 8080 on real meters.';
COMMENT ON COLUMN api.meter_registry.hardware IS 'Model read from the meter: C1.w (twin element), B1.w, EMA1.w, P1.ax / P1.cx (three phase).';
COMMENT ON COLUMN api.meter_registry.mode IS 'active: synced from the meter; passive: digital twin, never contacted.';
COMMENT ON COLUMN api.meter_registry.esco IS 'Owning ESCO (id); defaults to the caller''s ESCO.';
COMMENT ON COLUMN api.meter_registry.daylight_savings_correction_enabled IS
    'If set, tariff activation times are meter-local UK time (BST in summer).';
COMMENT ON COLUMN api.meter_registry.iccid IS 'SIM card id.';
COMMENT ON COLUMN api.meter_registry.installation_status IS 'planned, installed, commissioned or decommissioned.';

CREATE VIEW api.meter_registers WITH (security_invoker = true) AS
SELECT register_id, meter_id, esco, element, nature, status, direction_reversed, start_time, end_time, notes
FROM flows.meter_registers;
ALTER VIEW api.meter_registers ALTER COLUMN esco SET DEFAULT flows.current_esco_id();
COMMENT ON VIEW api.meter_registers IS
    'Registers of meters: SINGLE (single rate) or A (day/primary) and B (night/secondary).';
COMMENT ON COLUMN api.meter_registers.element IS 'A, B or SINGLE.';
COMMENT ON COLUMN api.meter_registers.nature IS 'power, heat or solar.';
COMMENT ON COLUMN api.meter_registers.status IS 'enabled, or replaced (with an end_time).';
COMMENT ON COLUMN api.meter_registers.direction_reversed IS 'Import and export swapped (e.g. solar wired backwards).';

CREATE VIEW api.meter_shadows WITH (security_invoker = true) AS
SELECT
    id,
    balance,
    emergency_credit,
    balance_updated_at,
    tariffs_active,
    tariffs_future,
    tariffs_updated_at,
    csq,
    health,
    health_details,
    last_healthy_at,
    clock_time_diff_seconds,
    voltage,
    voltage_l1,
    voltage_l2,
    voltage_l3,
    import_a,
    import_b,
    export_a,
    export_b,
    reads_updated_at,
    backlight,
    load_switch,
    prepay_enabled,
    updated_at
FROM flows.meter_shadows;
COMMENT ON VIEW api.meter_shadows IS
    'Last known state of each meter (digital twin); id = meter id. Embed the meter: ?select=*,meter_registry(serial,name).';
COMMENT ON COLUMN api.meter_shadows.balance IS 'Prepay credit, GBP.';
COMMENT ON COLUMN api.meter_shadows.csq IS 'Cellular signal quality 0-31; 99 = unknown.';
COMMENT ON COLUMN api.meter_shadows.health IS 'healthy or unhealthy (health_details says why); null = never contacted.';
COMMENT ON COLUMN api.meter_shadows.last_healthy_at IS 'Last successful contact.';
COMMENT ON COLUMN api.meter_shadows.clock_time_diff_seconds IS 'Meter clock minus server clock.';
COMMENT ON COLUMN api.meter_shadows.import_a IS 'Latest cumulative import read of element A (or SINGLE), kWh, as the meter reports it.';

CREATE VIEW api.meter_shadows_tariffs WITH (security_invoker = true) AS
SELECT
    id,
    (tariffs_active ->> 'standing_charge')::numeric                 AS active_standing_charge,
    (tariffs_active ->> 'unit_rate_element_a')::numeric             AS active_unit_rate_a,
    (tariffs_active ->> 'unit_rate_element_b')::numeric             AS active_unit_rate_b,
    (tariffs_active ->> 'prepayment_ecredit_availability')::numeric AS active_ecredit_availability,
    (tariffs_active ->> 'prepayment_debt_recovery_rate')::numeric   AS active_debt_recovery_rate,
    (tariffs_active ->> 'prepayment_emergency_credit')::numeric     AS active_emergency_credit,
    (tariffs_future ->> 'standing_charge')::numeric                 AS future_standing_charge,
    (tariffs_future ->> 'unit_rate_element_a')::numeric             AS future_unit_rate_a,
    (tariffs_future ->> 'unit_rate_element_b')::numeric             AS future_unit_rate_b,
    (tariffs_future ->> 'prepayment_ecredit_availability')::numeric AS future_ecredit_availability,
    (tariffs_future ->> 'prepayment_debt_recovery_rate')::numeric   AS future_debt_recovery_rate,
    (tariffs_future ->> 'prepayment_emergency_credit')::numeric     AS future_emergency_credit,
    (tariffs_future ->> 'activation_datetime')::timestamptz         AS future_activation_datetime,
    tariffs_updated_at
FROM flows.meter_shadows;
COMMENT ON VIEW api.meter_shadows_tariffs IS
    'One row per meter with its active and future tariffs flattened (GBP; unit rates per kWh, standing charge per day).';

CREATE VIEW api.meter_metrics WITH (security_invoker = true) AS
SELECT name, enabled, run_frequency, notes
FROM flows.meter_metrics;
COMMENT ON VIEW api.meter_metrics IS
    'Which readings are taken from active meters and how often (hourly, 12hourly, daily). Admins may change them.';
