-- Rollback of 0003_readings (partitions, grants and policies go with their tables).
DROP FUNCTION api.record_meter_state(uuid, timestamptz, jsonb),
              api.meter_registers(api.register_import), api.meter_registers(api.register_export),
              api.meter_registers(api.register_interval_hh);
DROP VIEW api.meter_event_log, api.meter_event_log_type, api.meter_tariff_history, api.meter_clock_drift,
          api.meter_health_history, api.meter_3p_voltage, api.meter_voltage, api.meter_csq,
          api.meter_prepay_balance, api.register_interval_monthly, api.register_interval_daily,
          api.register_interval_hh, api.register_export, api.register_import;
DROP FUNCTION flows.record_meter_events(uuid, timestamptz[], integer[], integer[]),
              flows.estimate_interval_hh(), flows.interval_hh_from_reads(uuid[], timestamptz[]),
              flows.record_meter_states(jsonb), flows.meter_state_rows(jsonb), flows.check_meter_state(jsonb),
              flows.record_register_reads(uuid[], timestamptz[], numeric[], text),
              flows.record_interval_hh(uuid[], timestamptz[], numeric[], numeric[], text),
              flows.refresh_interval_rollups(uuid[], timestamptz[]),
              flows.add_to_interval_rollups(uuid[], timestamptz[], numeric[], numeric[], boolean),
              flows.lock_known_registers(uuid[]),
              flows.check_reading_times(timestamptz, timestamptz);
DROP TRIGGER meter_registers_keep_readings ON flows.meter_registers;
DROP FUNCTION flows.guard_register_delete();
DROP TABLE flows.reads_to_estimate, flows.meter_event_log, flows.meter_event_log_type, flows.meter_tariff_history,
           flows.meter_clock_drift, flows.meter_health_history, flows.meter_3p_voltage, flows.meter_voltage,
           flows.meter_csq, flows.meter_prepay_balance, flows.register_interval_monthly,
           flows.register_interval_daily, flows.register_interval_hh, flows.register_export,
           flows.register_import;
DROP PROCEDURE flows.create_timeseries(text, text, text);
DROP FUNCTION flows.maintain_partitions(), flows.ensure_partitions(regclass, timestamptz, timestamptz);
