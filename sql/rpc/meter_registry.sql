CREATE VIEW api.meter_registry WITH (security_invoker = true) AS
SELECT
    id,
    serial,
    name,
    ip_address,
    hardware,
    firmware_version,
    mode,
    esco,
    prepay_enabled,
    daylight_savings_correction_enabled,
    single_meter_app,
    iccid,
    installation_status,
    created_at,
    updated_at
FROM flows.meter_registry;

-- Operators registering a meter need not name their own ESCO.
ALTER VIEW api.meter_registry ALTER COLUMN esco SET DEFAULT flows.current_esco_id();

COMMENT ON VIEW api.meter_registry IS
    'Meters and their configuration. POST to register a meter (operator, admin).';
COMMENT ON COLUMN api.meter_registry.serial IS 'Emlite serial: EML + 10 digits, or EMP1AX/EMP1CX + digits (three phase).';
COMMENT ON COLUMN api.meter_registry.ip_address IS 'Address on the private 4G network; EMOP port 8080.';
COMMENT ON COLUMN api.meter_registry.hardware IS 'Model string read from the meter, e.g. C1.w (twin element), P1.ax (three phase).';
COMMENT ON COLUMN api.meter_registry.mode IS 'active: synced from the meter; passive: digital twin, never contacted.';
COMMENT ON COLUMN api.meter_registry.esco IS 'Owning ESCO (id); defaults to the caller''s ESCO.';
COMMENT ON COLUMN api.meter_registry.daylight_savings_correction_enabled IS
    'If set, tariff activation times are meter-local UK time (BST in summer).';
COMMENT ON COLUMN api.meter_registry.iccid IS 'SIM card id.';
