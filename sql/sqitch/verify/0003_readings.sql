-- Verify flows:0003_readings
BEGIN;
DO $$
BEGIN
    PERFORM register_id, "timestamp", read FROM flows.register_import WHERE false;
    PERFORM register_id, "timestamp", read FROM flows.register_export WHERE false;
    PERFORM register_id, "timestamp", import_kwh, export_kwh, source FROM flows.register_interval_hh WHERE false;
    PERFORM register_id, day, intervals FROM flows.register_interval_daily WHERE false;
    PERFORM register_id, month, intervals FROM flows.register_interval_monthly WHERE false;
    PERFORM meter_id, "timestamp", balance FROM flows.meter_prepay_balance WHERE false;
    PERFORM meter_id, "timestamp", event_type, event_set FROM flows.meter_event_log WHERE false;
    ASSERT (SELECT count(*) FROM flows.meter_event_log_type) >= 80, 'event types not loaded';
    ASSERT flows.record_meter_states('[]') = 0, 'record_meter_states';
    ASSERT EXISTS (SELECT FROM pg_catalog.pg_inherits WHERE inhparent = 'flows.register_interval_hh'::regclass)
        OR EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'timescaledb'),
        'register_interval_hh has no partitions';
END
$$;
ROLLBACK;
