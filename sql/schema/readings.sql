-- Register readings: every cumulative read taken from a meter, and energy per
-- half hour. All times UTC. Late, out-of-order and duplicate data is normal;
-- the primary keys make re-delivery idempotent.
--
-- These tables take the bulk of the data, so they carry no per-row foreign
-- key (its check is ~60% of the cost of an insert). The recording functions
-- (recording/), the only way to write them, check registers once per
-- batch; flows.guard_register_delete keeps readings from losing their register.

CALL flows.create_timeseries('register_import', $columns$
    register_id uuid           NOT NULL,
    "timestamp" timestamptz    NOT NULL,
    read        numeric(14, 3) NOT NULL,
    PRIMARY KEY (register_id, "timestamp"),
    CONSTRAINT register_import_read_not_negative CHECK (read >= 0)
$columns$);
COMMENT ON TABLE flows.register_import IS 'Cumulative import reads (kWh) of a register, as read from the meter.';

CALL flows.create_timeseries('register_export', $columns$
    register_id uuid           NOT NULL,
    "timestamp" timestamptz    NOT NULL,
    read        numeric(14, 3) NOT NULL,
    PRIMARY KEY (register_id, "timestamp"),
    CONSTRAINT register_export_read_not_negative CHECK (read >= 0)
$columns$);
COMMENT ON TABLE flows.register_export IS 'Cumulative export reads (kWh) of a register, as read from the meter.';

-- Reads not yet turned into estimated half hours: noted by
-- flows.record_register_reads, taken by flows.estimate_interval_hh (from the
-- scheduler), so a sync's transaction stays short and the estimates for every
-- meter are made in one set-based pass.
CREATE TABLE flows.reads_to_estimate (
    register_id uuid        NOT NULL,
    "timestamp" timestamptz NOT NULL,
    PRIMARY KEY (register_id, "timestamp")
);
COMMENT ON TABLE flows.reads_to_estimate IS 'New register reads waiting for flows.estimate_interval_hh.';

-- Energy per half hour. source: 'profile_log' (the meter's own half-hourly
-- log, authoritative) or 'reads' (derived from consecutive cumulative reads).
CALL flows.create_timeseries('register_interval_hh', $columns$
    register_id uuid           NOT NULL,
    "timestamp" timestamptz    NOT NULL,
    import_kwh  numeric(12, 3),
    export_kwh  numeric(12, 3),
    source      text           NOT NULL,
    PRIMARY KEY (register_id, "timestamp"),
    CONSTRAINT register_interval_hh_half_hour_aligned CHECK (date_bin('30 minutes', "timestamp", 'epoch') = "timestamp"),
    CONSTRAINT register_interval_hh_has_energy CHECK (import_kwh IS NOT NULL OR export_kwh IS NOT NULL),
    CONSTRAINT register_interval_hh_kwh_range
        CHECK (import_kwh BETWEEN 0 AND 1000 AND export_kwh BETWEEN 0 AND 1000),
    CONSTRAINT register_interval_hh_source_valid CHECK (source IN ('reads', 'profile_log'))
$columns$);
COMMENT ON TABLE flows.register_interval_hh IS
    'Energy (kWh) per half hour starting at timestamp (:00 or :30 UTC), import and export apart.';

-- Rollups per UK day and month, kept exact by flows.record_interval_hh in the
-- same transaction as the half hours they sum (and, like them, written only
-- by it). intervals = half hours present.
CREATE TABLE flows.register_interval_daily (
    register_id uuid           NOT NULL,
    day         date           NOT NULL,
    import_kwh  numeric(14, 3) NOT NULL DEFAULT 0,
    export_kwh  numeric(14, 3) NOT NULL DEFAULT 0,
    intervals   smallint       NOT NULL,
    estimated   smallint       NOT NULL DEFAULT 0,
    PRIMARY KEY (register_id, day),
    CONSTRAINT register_interval_daily_intervals_range CHECK (intervals BETWEEN 0 AND 50),
    CONSTRAINT register_interval_daily_estimated_range CHECK (estimated BETWEEN 0 AND intervals)
);
COMMENT ON TABLE flows.register_interval_daily IS 'Half-hourly energy summed per register and UK day.';
COMMENT ON COLUMN flows.register_interval_daily.estimated IS
    'Half hours derived from reads (source reads), until the meter''s profile log replaces them.';

CREATE TABLE flows.register_interval_monthly (
    register_id uuid           NOT NULL,
    month       date           NOT NULL,
    import_kwh  numeric(16, 3) NOT NULL DEFAULT 0,
    export_kwh  numeric(16, 3) NOT NULL DEFAULT 0,
    intervals   integer        NOT NULL,
    PRIMARY KEY (register_id, month),
    CONSTRAINT register_interval_monthly_first_day CHECK (extract(day FROM month) = 1),
    CONSTRAINT register_interval_monthly_intervals_range CHECK (intervals BETWEEN 0 AND 1550)
);
COMMENT ON TABLE flows.register_interval_monthly IS 'Half-hourly energy summed per register and UK month.';

-- Readings never lose their register: a register with readings is marked
-- replaced (with an end_time), not deleted.
CREATE FUNCTION flows.guard_register_delete() RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    IF EXISTS (SELECT FROM flows.register_interval_hh AS h WHERE h.register_id = OLD.register_id)
       OR EXISTS (SELECT FROM flows.register_import AS i WHERE i.register_id = OLD.register_id)
       OR EXISTS (SELECT FROM flows.register_export AS e WHERE e.register_id = OLD.register_id) THEN
        RAISE EXCEPTION 'register % has readings and cannot be deleted', OLD.register_id
            USING ERRCODE = 'foreign_key_violation',
                  HINT = 'set status to replaced and an end_time instead';
    END IF;
    RETURN OLD;
END
$$;

CREATE TRIGGER meter_registers_keep_readings BEFORE DELETE ON flows.meter_registers
    FOR EACH ROW EXECUTE FUNCTION flows.guard_register_delete();
