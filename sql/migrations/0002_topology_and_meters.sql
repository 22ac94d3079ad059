-- 0002_topology_and_meters: Sites, properties, feeders, service heads, circuits, meters, registers, shadows, metrics.

-- Everything below is created by, and owned by, flows_owner.
SET LOCAL ROLE flows_owner;

-- ---- schema/sites.sql ----
-- Sites and the properties on them.
CREATE TABLE flows.sites (
    id          uuid           PRIMARY KEY DEFAULT gen_random_uuid(),
    esco        uuid           NOT NULL REFERENCES flows.escos (id),
    code        text           NOT NULL,
    name        text           NOT NULL,
    location    text,
    capacity_kw numeric(10, 2),
    created_at  timestamptz    NOT NULL DEFAULT now(),
    CONSTRAINT sites_id_esco_key UNIQUE (id, esco),
    CONSTRAINT sites_esco_code_key UNIQUE (esco, code),
    CONSTRAINT sites_code_format CHECK (code ~ '^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$'),
    CONSTRAINT sites_name_not_blank CHECK (btrim(name) <> ''),
    CONSTRAINT sites_capacity_kw_positive CHECK (capacity_kw > 0)
);
COMMENT ON TABLE flows.sites IS 'A site groups meters under one boundary settlement meter.';

CREATE TABLE flows.properties (
    id         uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    esco       uuid        NOT NULL,
    site       uuid        NOT NULL,
    plot       text        NOT NULL,
    address    text,
    type       text        NOT NULL DEFAULT 'residential',
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT properties_id_esco_key UNIQUE (id, esco),
    CONSTRAINT properties_site_plot_key UNIQUE (site, plot),
    CONSTRAINT properties_site_esco_fkey FOREIGN KEY (site, esco) REFERENCES flows.sites (id, esco),
    CONSTRAINT properties_plot_not_blank CHECK (btrim(plot) <> ''),
    CONSTRAINT properties_type_valid CHECK (type IN ('residential', 'commercial'))
);
COMMENT ON TABLE flows.properties IS 'Homes and businesses; plot is unique per site (e.g. WL-01).';

-- ---- schema/network.sql ----
-- The electrical network: feeders, service heads, and what they connect.
CREATE TABLE flows.feeder_registry (
    id          uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    esco        uuid        NOT NULL REFERENCES flows.escos (id),
    name        text        NOT NULL,
    substation  text,
    rating_amps integer,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT feeder_registry_id_esco_key UNIQUE (id, esco),
    CONSTRAINT feeder_registry_esco_name_key UNIQUE (esco, name),
    CONSTRAINT feeder_registry_name_not_blank CHECK (btrim(name) <> ''),
    CONSTRAINT feeder_registry_rating_amps_positive CHECK (rating_amps > 0)
);
COMMENT ON TABLE flows.feeder_registry IS 'Low-voltage feeders out of a substation.';

CREATE TABLE flows.service_head_registry (
    id          uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    esco        uuid        NOT NULL REFERENCES flows.escos (id),
    name        text        NOT NULL,
    phase       smallint,
    fuse_rating integer,
    type        text        NOT NULL DEFAULT 'network_owned',
    feeder      uuid,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT service_head_registry_id_esco_key UNIQUE (id, esco),
    CONSTRAINT service_head_registry_esco_name_key UNIQUE (esco, name),
    CONSTRAINT service_head_registry_feeder_esco_fkey
        FOREIGN KEY (feeder, esco) REFERENCES flows.feeder_registry (id, esco),
    CONSTRAINT service_head_registry_name_not_blank CHECK (btrim(name) <> ''),
    CONSTRAINT service_head_registry_phase_valid CHECK (phase BETWEEN 1 AND 3),
    CONSTRAINT service_head_registry_fuse_rating_positive CHECK (fuse_rating > 0),
    CONSTRAINT service_head_registry_type_valid CHECK (type IN ('customer_owned', 'network_owned'))
);
COMMENT ON TABLE flows.service_head_registry IS 'Service heads: where a property connects to the network.';
COMMENT ON COLUMN flows.service_head_registry.phase IS 'Phase of the network the head is connected to (1, 2 or 3).';
COMMENT ON COLUMN flows.service_head_registry.fuse_rating IS 'Amps.';

CREATE INDEX service_head_registry_feeder_idx ON flows.service_head_registry (feeder);

-- One head can feed several properties; a property can have several heads
-- (e.g. a supply meter and a solar meter).
CREATE TABLE flows.properties_service_head (
    property     uuid        NOT NULL,
    service_head uuid        NOT NULL,
    esco         uuid        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (property, service_head),
    CONSTRAINT properties_service_head_property_esco_fkey
        FOREIGN KEY (property, esco) REFERENCES flows.properties (id, esco) ON DELETE CASCADE,
    CONSTRAINT properties_service_head_service_head_esco_fkey
        FOREIGN KEY (service_head, esco) REFERENCES flows.service_head_registry (id, esco) ON DELETE CASCADE
);
COMMENT ON TABLE flows.properties_service_head IS 'Which service heads supply which properties.';
CREATE INDEX properties_service_head_service_head_idx ON flows.properties_service_head (service_head);

-- ---- schema/tariffs.sql ----
-- Tariffs as Flows stores them (meter_shadows.tariffs_active / tariffs_future)
-- and accepts them: a JSON object of GBP amounts, with the activation time for
-- a future tariff. Keys and sanity ranges:
--   standing_charge                  0 - 2    GBP per day
--   unit_rate_element_a, _b          0 - 1    GBP per kWh
--   prepayment_ecredit_availability  0 - 500  GBP (balance at which emergency credit may be taken)
--   prepayment_debt_recovery_rate    0 - 20   GBP per day
--   prepayment_emergency_credit      0 - 500  GBP
--   activation_datetime              ISO 8601 with offset (future tariffs only)
-- Amounts are numbers or numeric strings with at most 5 decimals (the meter's
-- resolution is 0.00001 GBP).

CREATE FUNCTION flows.tariff_field_limit(field text) RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE field
    WHEN 'standing_charge' THEN 2
    WHEN 'unit_rate_element_a' THEN 1
    WHEN 'unit_rate_element_b' THEN 1
    WHEN 'prepayment_ecredit_availability' THEN 500
    WHEN 'prepayment_debt_recovery_rate' THEN 20
    WHEN 'prepayment_emergency_credit' THEN 500
END;

-- True for a valid tariff (or null); otherwise raises an error naming the field.
CREATE FUNCTION flows.tariff_is_valid(tariff jsonb, is_future boolean) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = ''
AS $$
DECLARE
    field text;
    value jsonb;
    amount numeric;
    limit_gbp numeric;
    what text := CASE WHEN is_future THEN 'future tariff' ELSE 'active tariff' END;
BEGIN
    IF tariff IS NULL OR tariff = '{}' THEN
        RETURN true;  -- no tariff
    END IF;
    IF pg_catalog.jsonb_typeof(tariff) <> 'object' THEN
        RAISE EXCEPTION '% must be a JSON object', what USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR field, value IN SELECT e.key, e.value FROM pg_catalog.jsonb_each(tariff) AS e LOOP
        IF field = 'activation_datetime' THEN
            IF NOT is_future THEN
                RAISE EXCEPTION '% field activation_datetime belongs to future tariffs only', what
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            IF pg_catalog.jsonb_typeof(value) <> 'string' OR NOT flows.is_iso_time(value #>> '{}') THEN
                RAISE EXCEPTION '% field activation_datetime must be an ISO 8601 time with offset, got %', what, value
                    USING ERRCODE = 'invalid_parameter_value', HINT = 'e.g. "2027-01-01T00:00:00Z"';
            END IF;
            CONTINUE;
        END IF;
        limit_gbp := flows.tariff_field_limit(field);
        IF limit_gbp IS NULL THEN
            RAISE EXCEPTION 'unknown % field %', what, field
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'fields: standing_charge, unit_rate_element_a, unit_rate_element_b, '
                          || 'prepayment_ecredit_availability, prepayment_debt_recovery_rate, '
                          || 'prepayment_emergency_credit, activation_datetime';
        END IF;
        IF pg_catalog.jsonb_typeof(value) NOT IN ('number', 'string')
           OR (value #>> '{}') !~ '^-?\d+(\.\d+)?$' THEN
            RAISE EXCEPTION '% field % must be a number, got %', what, field, value
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        amount := (value #>> '{}')::numeric;
        IF amount < 0 OR amount > limit_gbp THEN
            RAISE EXCEPTION '% field % must be between 0 and % GBP, got %', what, field, limit_gbp, amount
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF pg_catalog.scale(amount) > 5 THEN
            RAISE EXCEPTION '% field % has more than 5 decimal places: %', what, field, amount
                USING ERRCODE = 'invalid_parameter_value', HINT = 'meters store amounts in 0.00001 GBP';
        END IF;
    END LOOP;
    IF is_future AND NOT tariff ? 'activation_datetime' THEN
        RAISE EXCEPTION 'a future tariff needs activation_datetime' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN true;
END
$$;
COMMENT ON FUNCTION flows.tariff_is_valid(jsonb, boolean) IS
    'True for a valid tariff JSON object (or null); otherwise raises an error that names the bad field.';

-- ---- schema/meters.sql ----
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

-- Three-phase Emlite meters (EMP1AX/EMP1CX, hardware P1.ax/P1.cx) have no
-- prepayment, tariff or single-phase profile-log objects.
CREATE FUNCTION flows.is_three_phase(m flows.meter_registry) RETURNS boolean
LANGUAGE sql IMMUTABLE
SET search_path = ''
RETURN m.serial LIKE 'EMP1%' OR m.hardware IN ('P1.ax', 'P1.cx');


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
    ON flows.meter_registers (meter_id, element) WHERE status = 'enabled';

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
    INSERT INTO flows.meter_shadows (id, prepay_enabled) VALUES (NEW.id, NEW.prepay_enabled);
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
    PRIMARY KEY (service_head, meter),
    CONSTRAINT service_head_meter_service_head_esco_fkey
        FOREIGN KEY (service_head, esco) REFERENCES flows.service_head_registry (id, esco) ON DELETE CASCADE,
    CONSTRAINT service_head_meter_meter_esco_fkey
        FOREIGN KEY (meter, esco) REFERENCES flows.meter_registry (id, esco) ON DELETE CASCADE
);
COMMENT ON TABLE flows.service_head_meter IS 'Which meters sit behind which service heads.';
CREATE INDEX service_head_meter_meter_idx ON flows.service_head_meter (meter);

-- ---- schema/circuits.sql ----
-- Circuits: logical groups of load on a site (power, heat, solar), and which
-- registers measure them when. A register moves between circuits over time;
-- its ranges never overlap. Aggregates honour the ranges.
CREATE TABLE flows.circuits (
    id          uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    esco        uuid        NOT NULL,
    site        uuid        NOT NULL,
    type        text        NOT NULL,
    name        text        NOT NULL,
    rating_amps integer,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT circuits_id_esco_key UNIQUE (id, esco),
    CONSTRAINT circuits_site_name_key UNIQUE (site, name),
    CONSTRAINT circuits_site_esco_fkey FOREIGN KEY (site, esco) REFERENCES flows.sites (id, esco),
    CONSTRAINT circuits_type_valid CHECK (type IN ('power', 'heat', 'solar')),
    CONSTRAINT circuits_name_not_blank CHECK (btrim(name) <> ''),
    CONSTRAINT circuits_rating_amps_positive CHECK (rating_amps > 0)
);
COMMENT ON TABLE flows.circuits IS 'Logical groupings of load on a site: power, heat or solar.';

CREATE TABLE flows.circuit_register (
    id         uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    circuit    uuid        NOT NULL,
    register   uuid        NOT NULL,
    esco       uuid        NOT NULL,
    start_time timestamptz NOT NULL,
    end_time   timestamptz,
    notes      text,
    CONSTRAINT circuit_register_circuit_esco_fkey
        FOREIGN KEY (circuit, esco) REFERENCES flows.circuits (id, esco) ON DELETE CASCADE,
    CONSTRAINT circuit_register_register_esco_fkey
        FOREIGN KEY (register, esco) REFERENCES flows.meter_registers (register_id, esco) ON DELETE CASCADE,
    CONSTRAINT circuit_register_end_after_start CHECK (end_time > start_time),
    CONSTRAINT circuit_register_register_time_overlap
        EXCLUDE USING gist (register WITH =, tstzrange(start_time, end_time) WITH &&)
);
COMMENT ON TABLE flows.circuit_register IS
    'Which register measures which circuit, from start_time until end_time (null: still).';
CREATE INDEX circuit_register_circuit_idx ON flows.circuit_register (circuit);

-- ---- schema/meter_metrics.sql ----
-- Which readings the scheduler takes from active meters, and how often.
CREATE TABLE flows.meter_metrics (
    name          text    PRIMARY KEY,
    enabled       boolean NOT NULL DEFAULT true,
    run_frequency text    NOT NULL,
    notes         text,
    CONSTRAINT meter_metrics_run_frequency_valid CHECK (run_frequency IN ('hourly', '12hourly', 'daily'))
);
COMMENT ON TABLE flows.meter_metrics IS 'Readings taken from active meters and how often (passive meters are never contacted).';

-- Production's cadence.
INSERT INTO flows.meter_metrics (name, run_frequency, notes) VALUES
    ('reads',            'hourly',   'cumulative import/export of elements A and B'),
    ('prepay_balance',   'hourly',   'balance and emergency credit'),
    ('csq',              '12hourly', 'cellular signal quality'),
    ('voltage',          '12hourly', 'instantaneous voltage (per phase on three-phase meters)'),
    ('event_log',        'daily',    'new entries of the meter''s event log'),
    ('firmware_version', 'daily',    NULL),
    ('hardware',         'daily',    NULL),
    ('clock_drift',      'daily',    'meter clock minus server clock'),
    ('tariffs_active',   'daily',    'the tariff the meter applies now'),
    ('tariffs_future',   'daily',    'the tariff waiting for its activation time');

-- ---- rpc/sites.sql ----
CREATE VIEW api.sites WITH (security_invoker = true) AS
SELECT id, esco, code, name, location, capacity_kw, created_at
FROM flows.sites;
ALTER VIEW api.sites ALTER COLUMN esco SET DEFAULT flows.current_esco_id();
COMMENT ON VIEW api.sites IS 'Sites: a group of properties behind one boundary settlement meter.';
COMMENT ON COLUMN api.sites.esco IS 'Owning ESCO (id); defaults to the caller''s ESCO.';
COMMENT ON COLUMN api.sites.code IS 'Short code, unique within the ESCO.';
COMMENT ON COLUMN api.sites.capacity_kw IS 'Connection capacity, kW.';

-- The production table was called sites_new; existing clients still use the name.
CREATE VIEW api.sites_new WITH (security_invoker = true) AS
SELECT id, esco, code, name, location, capacity_kw, created_at
FROM api.sites;
COMMENT ON VIEW api.sites_new IS 'Alias of sites, for clients written against the old sites_new table.';

CREATE VIEW api.properties WITH (security_invoker = true) AS
SELECT id, esco, site, plot, address, type, created_at
FROM flows.properties;
ALTER VIEW api.properties ALTER COLUMN esco SET DEFAULT flows.current_esco_id();
COMMENT ON VIEW api.properties IS 'Homes and businesses on a site.';
COMMENT ON COLUMN api.properties.plot IS 'Plot name, unique within the site (e.g. WL-01).';
COMMENT ON COLUMN api.properties.type IS 'residential or commercial.';

-- ---- rpc/network.sql ----
CREATE VIEW api.feeder_registry WITH (security_invoker = true) AS
SELECT id, esco, name, substation, rating_amps, created_at
FROM flows.feeder_registry;
ALTER VIEW api.feeder_registry ALTER COLUMN esco SET DEFAULT flows.current_esco_id();
COMMENT ON VIEW api.feeder_registry IS 'Low-voltage feeders; name unique within the ESCO.';

CREATE VIEW api.service_head_registry WITH (security_invoker = true) AS
SELECT id, esco, name, phase, fuse_rating, type, feeder, created_at
FROM flows.service_head_registry;
ALTER VIEW api.service_head_registry ALTER COLUMN esco SET DEFAULT flows.current_esco_id();
COMMENT ON VIEW api.service_head_registry IS 'Service heads: where properties connect to the network.';
COMMENT ON COLUMN api.service_head_registry.phase IS 'Network phase the head is on: 1, 2 or 3.';
COMMENT ON COLUMN api.service_head_registry.fuse_rating IS 'Amps.';
COMMENT ON COLUMN api.service_head_registry.type IS 'customer_owned or network_owned.';

CREATE VIEW api.properties_service_head WITH (security_invoker = true) AS
SELECT property, service_head, esco, created_at
FROM flows.properties_service_head;
ALTER VIEW api.properties_service_head ALTER COLUMN esco SET DEFAULT flows.current_esco_id();
COMMENT ON VIEW api.properties_service_head IS
    'Links properties and service heads (many to many). POST to link, DELETE to unlink.';

CREATE VIEW api.service_head_meter WITH (security_invoker = true) AS
SELECT service_head, meter, esco, created_at
FROM flows.service_head_meter;
ALTER VIEW api.service_head_meter ALTER COLUMN esco SET DEFAULT flows.current_esco_id();
COMMENT ON VIEW api.service_head_meter IS 'Links service heads and meters. POST to link, DELETE to unlink.';

-- ---- rpc/circuits.sql ----
CREATE VIEW api.circuits WITH (security_invoker = true) AS
SELECT id, esco, site, type, name, rating_amps, created_at
FROM flows.circuits;
ALTER VIEW api.circuits ALTER COLUMN esco SET DEFAULT flows.current_esco_id();
COMMENT ON VIEW api.circuits IS 'Circuits on a site: power, heat or solar.';

CREATE VIEW api.circuit_register WITH (security_invoker = true) AS
SELECT id, circuit, register, esco, start_time, end_time, notes
FROM flows.circuit_register;
ALTER VIEW api.circuit_register ALTER COLUMN esco SET DEFAULT flows.current_esco_id();
COMMENT ON VIEW api.circuit_register IS
    'Which register measures a circuit from start_time until end_time (null: still). '
    'A register''s ranges may not overlap; PATCH end_time to move it to another circuit.';

-- ---- rpc/meters.sql ----
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

-- ---- rpc/register_meter.sql ----
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

-- ---- rpc/get_meters_for_cli.sql ----
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

-- ---- rls/privileges.sql: Topology and meters ----
GRANT EXECUTE ON FUNCTION flows.tariff_field_limit(text), flows.tariff_is_valid(jsonb, boolean),
                          flows.is_three_phase(flows.meter_registry)
    TO flows_admin, flows_operator, flows_analyst, flows_service, flows_customer;

-- Configuration and topology: operators and admins write; analysts and workers read.
GRANT SELECT ON
    flows.sites, api.sites, api.sites_new,
    flows.properties, api.properties,
    flows.feeder_registry, api.feeder_registry,
    flows.service_head_registry, api.service_head_registry,
    flows.properties_service_head, api.properties_service_head,
    flows.service_head_meter, api.service_head_meter,
    flows.circuits, api.circuits,
    flows.circuit_register, api.circuit_register,
    flows.meter_registry, api.meter_registry,
    flows.meter_registers, api.meter_registers
TO flows_analyst, flows_service;
GRANT SELECT, INSERT, UPDATE, DELETE ON
    flows.sites, api.sites, api.sites_new,
    flows.properties, api.properties,
    flows.feeder_registry, api.feeder_registry,
    flows.service_head_registry, api.service_head_registry,
    flows.properties_service_head, api.properties_service_head,
    flows.service_head_meter, api.service_head_meter,
    flows.circuits, api.circuits,
    flows.circuit_register, api.circuit_register,
    flows.meter_registry, api.meter_registry,
    flows.meter_registers, api.meter_registers
TO flows_admin, flows_operator;
-- What workers learn about a meter's make.
GRANT UPDATE (hardware, firmware_version) ON flows.meter_registry TO flows_service;
-- Customers: their properties and the meters behind them (rows: policies.sql).
GRANT SELECT ON
    flows.properties, api.properties,
    flows.properties_service_head,
    flows.service_head_meter,
    flows.meter_registry, api.meter_registry,
    flows.meter_registers, api.meter_registers
TO flows_customer;

-- The digital twin: workers (and admins) write it, everyone signed in reads it.
GRANT SELECT ON flows.meter_shadows, api.meter_shadows, api.meter_shadows_tariffs
    TO flows_admin, flows_operator, flows_analyst, flows_service, flows_customer;
GRANT UPDATE ON flows.meter_shadows TO flows_service, flows_admin;

-- Sync cadence: admins set it, others read it.
GRANT SELECT ON flows.meter_metrics, api.meter_metrics TO flows_operator, flows_analyst, flows_service;
GRANT SELECT, INSERT, UPDATE, DELETE ON flows.meter_metrics, api.meter_metrics TO flows_admin;

GRANT EXECUTE ON FUNCTION api.get_meters_for_cli(text, text)
    TO flows_admin, flows_operator, flows_analyst, flows_service;
GRANT EXECUTE ON FUNCTION api.register_meter(text, text, inet, text, integer, uuid, text, boolean, boolean,
                                            boolean, text, text, uuid, jsonb)
    TO flows_admin, flows_operator;

-- ---- rls/policies.sql: Topology and meters ----
-- Configuration and topology: every row carries its ESCO.
ALTER TABLE flows.sites ENABLE ROW LEVEL SECURITY;
CREATE POLICY sites_all ON flows.sites TO flows_admin, flows_service
    USING (true);
CREATE POLICY sites_own_esco ON flows.sites TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));

ALTER TABLE flows.properties ENABLE ROW LEVEL SECURITY;
CREATE POLICY properties_all ON flows.properties TO flows_admin, flows_service
    USING (true);
CREATE POLICY properties_own_esco ON flows.properties TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));
CREATE POLICY properties_customer ON flows.properties FOR SELECT TO flows_customer
    USING (id IN (SELECT unnest(flows.customer_property_ids())) AND esco = (SELECT flows.current_esco_id()));

ALTER TABLE flows.feeder_registry ENABLE ROW LEVEL SECURITY;
CREATE POLICY feeder_registry_all ON flows.feeder_registry TO flows_admin, flows_service
    USING (true);
CREATE POLICY feeder_registry_own_esco ON flows.feeder_registry TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));

ALTER TABLE flows.service_head_registry ENABLE ROW LEVEL SECURITY;
CREATE POLICY service_head_registry_all ON flows.service_head_registry TO flows_admin, flows_service
    USING (true);
CREATE POLICY service_head_registry_own_esco ON flows.service_head_registry TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));

ALTER TABLE flows.properties_service_head ENABLE ROW LEVEL SECURITY;
CREATE POLICY properties_service_head_all ON flows.properties_service_head TO flows_admin, flows_service
    USING (true);
CREATE POLICY properties_service_head_own_esco ON flows.properties_service_head TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));
CREATE POLICY properties_service_head_customer ON flows.properties_service_head FOR SELECT TO flows_customer
    USING (property IN (SELECT p.id FROM flows.properties AS p));

ALTER TABLE flows.service_head_meter ENABLE ROW LEVEL SECURITY;
CREATE POLICY service_head_meter_all ON flows.service_head_meter TO flows_admin, flows_service
    USING (true);
CREATE POLICY service_head_meter_own_esco ON flows.service_head_meter TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));
CREATE POLICY service_head_meter_customer ON flows.service_head_meter FOR SELECT TO flows_customer
    USING (service_head IN (SELECT psh.service_head FROM flows.properties_service_head AS psh));

ALTER TABLE flows.circuits ENABLE ROW LEVEL SECURITY;
CREATE POLICY circuits_all ON flows.circuits TO flows_admin, flows_service
    USING (true);
CREATE POLICY circuits_own_esco ON flows.circuits TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));

ALTER TABLE flows.circuit_register ENABLE ROW LEVEL SECURITY;
CREATE POLICY circuit_register_all ON flows.circuit_register TO flows_admin, flows_service
    USING (true);
CREATE POLICY circuit_register_own_esco ON flows.circuit_register TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));

ALTER TABLE flows.meter_registry ENABLE ROW LEVEL SECURITY;
CREATE POLICY meter_registry_all ON flows.meter_registry TO flows_admin, flows_service
    USING (true);
CREATE POLICY meter_registry_own_esco ON flows.meter_registry TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));
CREATE POLICY meter_registry_customer ON flows.meter_registry FOR SELECT TO flows_customer
    USING (id IN (SELECT shm.meter FROM flows.service_head_meter AS shm));

ALTER TABLE flows.meter_registers ENABLE ROW LEVEL SECURITY;
CREATE POLICY meter_registers_all ON flows.meter_registers TO flows_admin, flows_service
    USING (true);
CREATE POLICY meter_registers_own_esco ON flows.meter_registers TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));
CREATE POLICY meter_registers_customer ON flows.meter_registers FOR SELECT TO flows_customer
    USING (meter_id IN (SELECT m.id FROM flows.meter_registry AS m));


-- The digital twin: visible with the meter.
ALTER TABLE flows.meter_shadows ENABLE ROW LEVEL SECURITY;
CREATE POLICY meter_shadows_all ON flows.meter_shadows TO flows_admin, flows_service
    USING (true);
CREATE POLICY meter_shadows_visible_meter ON flows.meter_shadows FOR SELECT
    TO flows_operator, flows_analyst, flows_customer
    USING (id IN (SELECT m.id FROM flows.meter_registry AS m));

-- Sync cadence: shared by every ESCO.
ALTER TABLE flows.meter_metrics ENABLE ROW LEVEL SECURITY;
CREATE POLICY meter_metrics_read ON flows.meter_metrics FOR SELECT
    TO flows_operator, flows_analyst, flows_service
    USING (true);
CREATE POLICY meter_metrics_admin ON flows.meter_metrics TO flows_admin
    USING (true);
