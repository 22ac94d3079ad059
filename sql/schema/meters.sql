-- Meters: configuration (meter_registry), registers, the digital twin
-- (meter_shadows) and where each meter is connected (service_head_meter).

CREATE TABLE flows.meter_registry (
    id                                  uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    serial                              text        NOT NULL,
    name                                text,
    ip_address                          inet,
    emop_port                           integer     NOT NULL DEFAULT 8080,
    hardware                            text,
    firmware_version                    text,
    mode                                text        NOT NULL DEFAULT 'active',
    esco                                uuid        NOT NULL REFERENCES flows.escos (id),
    site                                uuid,
    prepay_enabled                      boolean     NOT NULL DEFAULT true,
    daylight_savings_correction_enabled boolean     NOT NULL DEFAULT false,
    single_meter_app                    boolean     NOT NULL DEFAULT false,
    iccid                               text,
    installation_status                 text,
    created_at                          timestamptz NOT NULL DEFAULT now(),
    updated_at                          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT meter_registry_id_esco_key UNIQUE (id, esco),
    CONSTRAINT meter_registry_serial_key UNIQUE (serial),
    CONSTRAINT meter_registry_address_key UNIQUE (ip_address, emop_port),
    CONSTRAINT meter_registry_iccid_key UNIQUE (iccid),
    CONSTRAINT meter_registry_site_esco_fkey FOREIGN KEY (site, esco) REFERENCES flows.sites (id, esco),
    -- Emlite serials: EML + 10 digits (single phase), EMP1AX/EMP1CX + digits (three phase).
    CONSTRAINT meter_registry_serial_format CHECK (serial ~ '^(EML[0-9]{10}|EMP1[AC]X[0-9]{6,12})$'),
    CONSTRAINT meter_registry_emop_port_range CHECK (emop_port BETWEEN 1 AND 65535),
    CONSTRAINT meter_registry_mode_valid CHECK (mode IN ('active', 'passive')),
    CONSTRAINT meter_registry_iccid_format CHECK (iccid ~ '^[0-9]{18,22}F?$'),
    CONSTRAINT meter_registry_installation_status_valid
        CHECK (installation_status IN ('planned', 'installed', 'commissioned', 'decommissioned'))
);
COMMENT ON TABLE flows.meter_registry IS
    'Meter configuration. mode active = synced from the meter; passive = digital twin, never contacted.';
COMMENT ON COLUMN flows.meter_registry.emop_port IS
    'TCP port of the EMOP listener: 8080 on real meters; emulated meters share 127.0.0.1 on several ports.';

CREATE INDEX meter_registry_esco_idx ON flows.meter_registry (esco);
CREATE INDEX meter_registry_site_idx ON flows.meter_registry (site);

CREATE TRIGGER meter_registry_touch BEFORE UPDATE ON flows.meter_registry
    FOR EACH ROW EXECUTE FUNCTION flows.touch_updated_at();

-- Three-phase Emlite meters have no prepayment, tariff or single-phase
-- profile-log objects. A meter is three phase when its hardware or its serial
-- says so (flows.hardware_kinds): an EMP1AX... meter is, before any worker has
-- read its hardware.
CREATE FUNCTION flows.is_three_phase(m flows.meter_registry) RETURNS boolean
LANGUAGE sql STABLE
SET search_path = ''
RETURN EXISTS (SELECT FROM flows.hardware_kinds AS k
               WHERE k.phases = 3 AND (k.model = m.hardware OR pg_catalog.starts_with(m.serial, k.serial_prefix)));


-- Registers: one SINGLE register (single rate), or A (day/primary) and B
-- (night/secondary). A replaced register keeps its history.
CREATE TABLE flows.meter_registers (
    register_id        uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    meter_id           uuid        NOT NULL,
    esco               uuid        NOT NULL,
    element            text        NOT NULL,
    nature             text        NOT NULL DEFAULT 'power',
    status             text        NOT NULL DEFAULT 'enabled',
    direction_reversed boolean     NOT NULL DEFAULT false,
    start_time         timestamptz NOT NULL DEFAULT now(),
    end_time           timestamptz,
    notes              text,
    CONSTRAINT meter_registers_register_id_esco_key UNIQUE (register_id, esco),
    CONSTRAINT meter_registers_meter_esco_fkey
        FOREIGN KEY (meter_id, esco) REFERENCES flows.meter_registry (id, esco) ON DELETE CASCADE,
    CONSTRAINT meter_registers_element_valid CHECK (element IN ('A', 'B', 'SINGLE')),
    CONSTRAINT meter_registers_nature_valid CHECK (nature IN ('power', 'heat', 'solar')),
    CONSTRAINT meter_registers_status_valid CHECK (status IN ('enabled', 'replaced')),
    CONSTRAINT meter_registers_end_after_start CHECK (end_time > start_time)
);
COMMENT ON TABLE flows.meter_registers IS
    'Registers of a meter. direction_reversed: import and export swapped (e.g. solar wired backwards).';

-- At most one enabled register per element of a meter.
CREATE UNIQUE INDEX meter_registers_enabled_element_key
    ON flows.meter_registers (meter_id, element, esco) WHERE status = 'enabled';

-- A meter is either single rate (SINGLE) or dual rate (A and B), never both.
CREATE FUNCTION flows.check_register_elements() RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    IF EXISTS (
        SELECT FROM flows.meter_registers AS r
        WHERE r.meter_id = NEW.meter_id
          AND r.status = 'enabled'
          AND r.register_id <> NEW.register_id
          AND (r.element = 'SINGLE') <> (NEW.element = 'SINGLE')
    ) AND NEW.status = 'enabled' AND NEW.element IN ('A', 'B', 'SINGLE') THEN  -- other elements: the CHECK says so
        RAISE EXCEPTION 'element % cannot be enabled beside element % on the same meter',
            NEW.element, CASE NEW.element WHEN 'SINGLE' THEN 'A/B' ELSE 'SINGLE' END
            USING ERRCODE = 'check_violation',
                  HINT = 'a meter has one SINGLE register, or A and B registers; mark the old ones replaced first';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER meter_registers_elements BEFORE INSERT OR UPDATE ON flows.meter_registers
    FOR EACH ROW EXECUTE FUNCTION flows.check_register_elements();


-- The digital twin: the last known state of each meter, one row per meter,
-- created with the meter. Written by flows.record_meter_states only.
CREATE TABLE flows.meter_shadows (
    id                      uuid          PRIMARY KEY REFERENCES flows.meter_registry (id) ON DELETE CASCADE,
    balance                 numeric(12, 5),
    emergency_credit        numeric(12, 5),
    balance_updated_at      timestamptz,
    tariffs_active          jsonb,
    tariffs_future          jsonb,
    tariffs_updated_at      timestamptz,
    csq                     smallint,
    csq_updated_at          timestamptz,
    health                  text,
    health_details          text,
    health_updated_at       timestamptz,
    last_healthy_at         timestamptz,
    clock_time_diff_seconds integer,
    clock_checked_at        timestamptz,
    voltage                 numeric(5, 1),
    voltage_l1              numeric(5, 1),
    voltage_l2              numeric(5, 1),
    voltage_l3              numeric(5, 1),
    voltage_updated_at      timestamptz,
    import_a                numeric(14, 3),
    import_b                numeric(14, 3),
    export_a                numeric(14, 3),
    export_b                numeric(14, 3),
    reads_updated_at        timestamptz,
    backlight               text,
    load_switch             text,
    prepay_enabled          boolean,
    settings_updated_at     timestamptz,
    updated_at              timestamptz   NOT NULL DEFAULT now(),
    esco                    uuid          NOT NULL,
    CONSTRAINT meter_shadows_meter_esco_fkey
        FOREIGN KEY (id, esco) REFERENCES flows.meter_registry (id, esco) ON DELETE CASCADE,
    CONSTRAINT meter_shadows_csq_range CHECK (csq BETWEEN 0 AND 31 OR csq = 99),
    CONSTRAINT meter_shadows_health_valid CHECK (health IN ('healthy', 'unhealthy')),
    CONSTRAINT meter_shadows_voltage_range
        CHECK (voltage BETWEEN 0 AND 500 AND voltage_l1 BETWEEN 0 AND 500
               AND voltage_l2 BETWEEN 0 AND 500 AND voltage_l3 BETWEEN 0 AND 500),
    CONSTRAINT meter_shadows_reads_not_negative
        CHECK (import_a >= 0 AND import_b >= 0 AND export_a >= 0 AND export_b >= 0),
    CONSTRAINT meter_shadows_tariffs_active_valid CHECK (flows.tariff_is_valid(tariffs_active, false)),
    CONSTRAINT meter_shadows_tariffs_future_valid CHECK (flows.tariff_is_valid(tariffs_future, true))
);
COMMENT ON TABLE flows.meter_shadows IS 'Last known state of each meter (its digital twin); id = meter id.';
COMMENT ON COLUMN flows.meter_shadows.balance IS 'Prepay credit in GBP (negative when in debt).';
COMMENT ON COLUMN flows.meter_shadows.csq IS 'Cellular signal quality 0-31; 99 = unknown.';
COMMENT ON COLUMN flows.meter_shadows.last_healthy_at IS 'Last successful contact with the meter.';
COMMENT ON COLUMN flows.meter_shadows.clock_time_diff_seconds IS 'Meter clock minus server clock.';
COMMENT ON COLUMN flows.meter_shadows.import_a IS 'Latest cumulative import read of element A (or SINGLE), kWh.';
COMMENT ON COLUMN flows.meter_shadows.esco IS
    'The meter''s ESCO, so that an operator''s read of the twins is one index scan, not a filter over every ESCO''s.';
CREATE INDEX meter_shadows_esco_idx ON flows.meter_shadows (esco);

CREATE TRIGGER meter_shadows_touch BEFORE UPDATE ON flows.meter_shadows
    FOR EACH ROW EXECUTE FUNCTION flows.touch_updated_at();

-- SECURITY DEFINER: whoever registers a meter gets its shadow, without
-- needing write access to meter state themselves.
CREATE FUNCTION flows.create_meter_shadow() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ''
AS $$
BEGIN
    INSERT INTO flows.meter_shadows (id, esco, prepay_enabled) VALUES (NEW.id, NEW.esco, NEW.prepay_enabled);
    RETURN NULL;
END
$$;

CREATE TRIGGER meter_registry_shadow AFTER INSERT ON flows.meter_registry
    FOR EACH ROW EXECUTE FUNCTION flows.create_meter_shadow();


CREATE TABLE flows.service_head_meter (
    service_head uuid        NOT NULL,
    meter        uuid        NOT NULL,
    esco         uuid        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (service_head, meter, esco),
    CONSTRAINT service_head_meter_service_head_esco_fkey
        FOREIGN KEY (service_head, esco) REFERENCES flows.service_head_registry (id, esco) ON DELETE CASCADE,
    CONSTRAINT service_head_meter_meter_esco_fkey
        FOREIGN KEY (meter, esco) REFERENCES flows.meter_registry (id, esco) ON DELETE CASCADE
);
COMMENT ON TABLE flows.service_head_meter IS 'Which meters sit behind which service heads.';
CREATE INDEX service_head_meter_meter_idx ON flows.service_head_meter (meter);
