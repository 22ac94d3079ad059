-- Verify flows:0004_monitoring_and_aggregates
BEGIN;
DO $$
BEGIN
    PERFORM id, serial, balance, threshold FROM api.meters_low_balance WHERE false;
    PERFORM id, last_online FROM api.meters_offline_all WHERE false;
    PERFORM id, last_online FROM api.meters_offline_recently WHERE false;
    PERFORM id, clock_time_diff_seconds FROM api.meters_clock_drift WHERE false;
    PERFORM register_id, day, expected, present, missing FROM api.register_interval_hh_missing WHERE false;
    PERFORM circuit_id, month, import_kwh FROM api.circuit_interval_monthly WHERE false;
    PERFORM site_id, month, import_kwh FROM api.site_interval_monthly WHERE false;
    PERFORM property_id, day, import_kwh FROM api.property_interval_daily WHERE false;
END
$$;
ROLLBACK;
