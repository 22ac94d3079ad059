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
