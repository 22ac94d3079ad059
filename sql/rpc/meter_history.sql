CREATE VIEW api.meter_prepay_balance WITH (security_invoker = true) AS
SELECT meter_id, "timestamp", balance, emergency_credit
FROM flows.meter_prepay_balance;
COMMENT ON VIEW api.meter_prepay_balance IS 'Prepay balance (GBP) over time.';

CREATE VIEW api.meter_csq WITH (security_invoker = true) AS
SELECT meter_id, "timestamp", csq
FROM flows.meter_csq;
COMMENT ON VIEW api.meter_csq IS 'Cellular signal quality over time (0-31; 99 unknown).';

CREATE VIEW api.meter_voltage WITH (security_invoker = true) AS
SELECT meter_id, "timestamp", voltage
FROM flows.meter_voltage;
COMMENT ON VIEW api.meter_voltage IS 'Voltage (V) of single-phase meters over time.';

CREATE VIEW api.meter_3p_voltage WITH (security_invoker = true) AS
SELECT meter_id, "timestamp", l1, l2, l3
FROM flows.meter_3p_voltage;
COMMENT ON VIEW api.meter_3p_voltage IS 'Per-phase voltages (V) of three-phase meters over time.';

CREATE VIEW api.meter_health_history WITH (security_invoker = true) AS
SELECT meter_id, "timestamp", health, reason
FROM flows.meter_health_history;
COMMENT ON VIEW api.meter_health_history IS 'Every health verdict on a meter, with the reason.';

CREATE VIEW api.meter_clock_drift WITH (security_invoker = true) AS
SELECT meter_id, "timestamp", seconds
FROM flows.meter_clock_drift;
COMMENT ON VIEW api.meter_clock_drift IS 'Meter clock minus server clock (seconds) each time it was checked.';

CREATE VIEW api.meter_tariff_history WITH (security_invoker = true) AS
SELECT meter_id, "timestamp", kind, tariff
FROM flows.meter_tariff_history;
COMMENT ON VIEW api.meter_tariff_history IS 'Tariffs read from meters (kind active or future), one row per change.';

CREATE VIEW api.meter_event_log_type WITH (security_invoker = true) AS
SELECT id, name
FROM flows.meter_event_log_type;
COMMENT ON VIEW api.meter_event_log_type IS 'Names of meter event ids.';

CREATE VIEW api.meter_event_log WITH (security_invoker = true) AS
SELECT e.meter_id, e."timestamp", e.event_type, t.name AS event_name, e.event_set
FROM flows.meter_event_log AS e
JOIN flows.meter_event_log_type AS t ON t.id = e.event_type;
COMMENT ON VIEW api.meter_event_log IS 'Entries of meters'' own event logs; event_set counts events per type.';
