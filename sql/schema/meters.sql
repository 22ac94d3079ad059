-- The meter register: one row per physical meter and its configuration.
CREATE TABLE flows.meter_registry (
    id                                  uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    serial                              text        NOT NULL,
    name                                text,
    ip_address                          inet,
    hardware                            text,
    firmware_version                    text,
    mode                                text        NOT NULL DEFAULT 'active',
    esco                                uuid        NOT NULL REFERENCES flows.escos (id),
    prepay_enabled                      boolean     NOT NULL DEFAULT true,
    daylight_savings_correction_enabled boolean     NOT NULL DEFAULT false,
    single_meter_app                    boolean     NOT NULL DEFAULT false,
    iccid                               text,
    installation_status                 text,
    created_at                          timestamptz NOT NULL DEFAULT now(),
    updated_at                          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT meter_registry_serial_key UNIQUE (serial),
    CONSTRAINT meter_registry_ip_address_key UNIQUE (ip_address),
    CONSTRAINT meter_registry_iccid_key UNIQUE (iccid),
    -- Emlite serials: EML + 10 digits (single phase), EMP1AX/EMP1CX + digits (three phase).
    CONSTRAINT meter_registry_serial_format CHECK (serial ~ '^(EML[0-9]{10}|EMP1[AC]X[0-9]{6,12})$'),
    CONSTRAINT meter_registry_mode_valid CHECK (mode IN ('active', 'passive')),
    CONSTRAINT meter_registry_iccid_format CHECK (iccid ~ '^[0-9]{18,22}F?$')
);
COMMENT ON TABLE flows.meter_registry IS
    'Meter configuration. mode active = synced from the meter; passive = digital twin, never contacted.';

CREATE INDEX meter_registry_esco_idx ON flows.meter_registry (esco);

CREATE TRIGGER meter_registry_touch BEFORE UPDATE ON flows.meter_registry
    FOR EACH ROW EXECUTE FUNCTION flows.touch_updated_at();
