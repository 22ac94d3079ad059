-- Rollback of 0004_monitoring_and_aggregates.
DROP VIEW api.property_interval_monthly, api.property_interval_daily, api.property_interval_hh,
          api.site_interval_monthly, api.site_interval_daily, api.site_interval_hh,
          api.circuit_interval_monthly, api.circuit_interval_daily, api.circuit_interval_hh,
          api.register_interval_hh_missing, api.meters_clock_drift, api.meters_offline_recently,
          api.meters_offline_all, api.meters_low_balance;
DROP VIEW flows.property_registers, flows.circuit_monthly_parts, flows.circuit_daily_parts,
          flows.circuit_edge_half_hours, flows.circuit_ranges;
