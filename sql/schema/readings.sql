-- Register readings: every cumulative read taken from a meter, and energy per
-- half hour. All times UTC. Late, out-of-order and duplicate data is normal;
-- the primary keys make re-delivery idempotent.

CALL flows.create_timeseries('register_import', $columns$
    register_id uuid           NOT NULL REFERENCES flows.meter_registers (register_id),
    "timestamp" timestamptz    NOT NULL,
    read        numeric(14, 3) NOT NULL,
    PRIMARY KEY (register_id, "timestamp"),
    CONSTRAINT register_import_read_not_negative CHECK (read >= 0)
$columns$);
COMMENT ON TABLE flows.register_import IS 'Cumulative import reads (kWh) of a register, as read from the meter.';

CALL flows.create_timeseries('register_export', $columns$
    register_id uuid           NOT NULL REFERENCES flows.meter_registers (register_id),
    "timestamp" timestamptz    NOT NULL,
    read        numeric(14, 3) NOT NULL,
    PRIMARY KEY (register_id, "timestamp"),
    CONSTRAINT register_export_read_not_negative CHECK (read >= 0)
$columns$);
COMMENT ON TABLE flows.register_export IS 'Cumulative export reads (kWh) of a register, as read from the meter.';

-- Energy per half hour. source: 'profile_log' (the meter's own half-hourly
-- log, authoritative) or 'reads' (derived from consecutive cumulative reads).
CALL flows.create_timeseries('register_interval_hh', $columns$
    register_id uuid           NOT NULL REFERENCES flows.meter_registers (register_id),
    "timestamp" timestamptz    NOT NULL,
    import_kwh  numeric(12, 3),
    export_kwh  numeric(12, 3),
    source      text           NOT NULL,
    PRIMARY KEY (register_id, "timestamp"),
    CONSTRAINT register_interval_hh_half_hour_aligned CHECK (extract(epoch FROM "timestamp") % 1800 = 0),
    CONSTRAINT register_interval_hh_has_energy CHECK (import_kwh IS NOT NULL OR export_kwh IS NOT NULL),
    CONSTRAINT register_interval_hh_kwh_range
        CHECK (import_kwh BETWEEN 0 AND 1000 AND export_kwh BETWEEN 0 AND 1000),
    CONSTRAINT register_interval_hh_source_valid CHECK (source IN ('reads', 'profile_log'))
$columns$);
COMMENT ON TABLE flows.register_interval_hh IS
    'Energy (kWh) per half hour starting at timestamp (:00 or :30 UTC), import and export apart.';

-- Rollups per UK day and month, kept exact by flows.record_interval_hh in the
-- same transaction as the half hours they sum. intervals = half hours present.
CREATE TABLE flows.register_interval_daily (
    register_id uuid           NOT NULL REFERENCES flows.meter_registers (register_id),
    day         date           NOT NULL,
    import_kwh  numeric(14, 3) NOT NULL DEFAULT 0,
    export_kwh  numeric(14, 3) NOT NULL DEFAULT 0,
    intervals   smallint       NOT NULL,
    PRIMARY KEY (register_id, day),
    CONSTRAINT register_interval_daily_intervals_range CHECK (intervals BETWEEN 0 AND 50)
);
COMMENT ON TABLE flows.register_interval_daily IS 'Half-hourly energy summed per register and UK day.';

CREATE TABLE flows.register_interval_monthly (
    register_id uuid           NOT NULL REFERENCES flows.meter_registers (register_id),
    month       date           NOT NULL,
    import_kwh  numeric(16, 3) NOT NULL DEFAULT 0,
    export_kwh  numeric(16, 3) NOT NULL DEFAULT 0,
    intervals   integer        NOT NULL,
    PRIMARY KEY (register_id, month),
    CONSTRAINT register_interval_monthly_first_day CHECK (extract(day FROM month) = 1),
    CONSTRAINT register_interval_monthly_intervals_range CHECK (intervals BETWEEN 0 AND 1550)
);
COMMENT ON TABLE flows.register_interval_monthly IS 'Half-hourly energy summed per register and UK month.';
