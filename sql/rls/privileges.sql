-- Every grant in one place. Tables are reached through the security_invoker
-- views in `api`, so a role needs the privilege on the view and on what it
-- reads; row-level security (policies.sql) then decides which rows.
--
--   anon      api.health only
--   customer  reads own properties, meters, readings and property figures
--   analyst   reads everything of its ESCO (grafanareader is an analyst)
--   operator  analyst + writes configuration and topology of its ESCO
--   service   reads everything, writes meter state and readings (workers)
--   admin     everything, every ESCO

-- == Foundation: schemas, identity, ESCOs ==================================

GRANT USAGE ON SCHEMA api
    TO flows_anon, flows_admin, flows_operator, flows_analyst, flows_service, flows_customer;
GRANT USAGE ON SCHEMA flows
    TO flows_admin, flows_operator, flows_analyst, flows_service, flows_customer;

-- Helpers that policies, views and column defaults call.
GRANT EXECUTE ON FUNCTION
    flows.jwt_claims(),
    flows.current_esco_id(),
    flows.customer_property_ids(),
    flows.uk_day(timestamptz),
    flows.uk_day_start(date),
    flows.uk_month(date),
    flows.is_iso_time(text)
TO flows_admin, flows_operator, flows_analyst, flows_service, flows_customer;

GRANT EXECUTE ON FUNCTION api.health()
    TO flows_anon, flows_admin, flows_operator, flows_analyst, flows_service, flows_customer;

-- ESCOs: admins manage them; operators may rename theirs and set its threshold.
GRANT SELECT ON flows.escos, api.escos
    TO flows_operator, flows_analyst, flows_service, flows_customer;
GRANT UPDATE (name, low_balance_threshold) ON flows.escos, api.escos TO flows_operator;
GRANT SELECT, INSERT, UPDATE, DELETE ON flows.escos, api.escos TO flows_admin;


-- == Topology and meters ===================================================

GRANT EXECUTE ON FUNCTION flows.tariff_field_limit(text), flows.tariff_is_valid(jsonb, boolean),
                          flows.is_three_phase(flows.meter_registry)
    TO flows_admin, flows_operator, flows_analyst, flows_service, flows_customer;
-- What each model of meter is (read by is_three_phase): everyone reads, migrations write.
GRANT SELECT ON flows.hardware_kinds TO flows_admin, flows_operator, flows_analyst, flows_service, flows_customer;

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


-- == Readings and meter history ============================================

-- Recording meter data: the workers, and admins (e.g. for passive digital twins).
-- record_interval_hh and record_register_reads are SECURITY DEFINER and the
-- only writers of readings and their rollups: nobody gets INSERT on those.
GRANT EXECUTE ON FUNCTION
    flows.record_meter_states(jsonb),
    flows.record_interval_hh(uuid[], timestamptz[], numeric[], numeric[], text),
    flows.record_register_reads(uuid[], timestamptz[], numeric[], text),
    flows.record_meter_events(uuid, timestamptz[], integer[], integer[]),
    flows.interval_hh_from_reads(uuid[], timestamptz[]),
    flows.estimate_interval_hh(),
    flows.check_meter_state(jsonb),
    flows.meter_state_rows(jsonb),
    flows.newer(anyelement, timestamptz, anyelement, timestamptz),
    flows.check_reading_times(timestamptz, timestamptz),
    flows.ensure_partitions(regclass, timestamptz, timestamptz),
    flows.maintain_partitions()
TO flows_service, flows_admin;
GRANT EXECUTE ON FUNCTION api.record_meter_state(uuid, timestamptz, jsonb)
    TO flows_admin, flows_service;

-- Everyone signed in reads readings and history; workers (and admins) write history.
GRANT SELECT ON
    flows.register_import, api.register_import,
    flows.register_export, api.register_export,
    flows.register_interval_hh, api.register_interval_hh,
    flows.register_interval_daily, api.register_interval_daily,
    flows.register_interval_monthly, api.register_interval_monthly,
    flows.meter_prepay_balance, api.meter_prepay_balance,
    flows.meter_csq, api.meter_csq,
    flows.meter_voltage, api.meter_voltage,
    flows.meter_3p_voltage, api.meter_3p_voltage,
    flows.meter_health_history, api.meter_health_history,
    flows.meter_clock_drift, api.meter_clock_drift,
    flows.meter_tariff_history, api.meter_tariff_history,
    flows.meter_event_log, api.meter_event_log,
    flows.meter_event_log_type, api.meter_event_log_type
TO flows_admin, flows_operator, flows_analyst, flows_service, flows_customer;
GRANT INSERT ON
    flows.meter_prepay_balance, flows.meter_csq, flows.meter_voltage, flows.meter_3p_voltage,
    flows.meter_health_history, flows.meter_clock_drift, flows.meter_tariff_history,
    flows.meter_event_log, flows.meter_event_log_type
TO flows_service, flows_admin;
-- Embedding a reading's register (computed relationships, rpc/readings.sql).
GRANT EXECUTE ON FUNCTION
    api.meter_registers(api.register_import),
    api.meter_registers(api.register_export),
    api.meter_registers(api.register_interval_hh)
TO flows_admin, flows_operator, flows_analyst, flows_service, flows_customer;


-- == Monitoring and aggregates =============================================

GRANT SELECT ON
    api.meters_low_balance, api.meters_offline_all, api.meters_offline_recently, api.meters_clock_drift,
    api.register_interval_hh_missing,
    flows.circuit_ranges, flows.circuit_edge_half_hours, flows.circuit_daily_parts, flows.circuit_monthly_parts,
    api.circuit_interval_hh, api.circuit_interval_daily, api.circuit_interval_monthly,
    api.site_interval_hh, api.site_interval_daily, api.site_interval_monthly
TO flows_admin, flows_operator, flows_analyst, flows_service;
GRANT SELECT ON
    flows.property_registers,
    api.property_interval_hh, api.property_interval_daily, api.property_interval_monthly
TO flows_admin, flows_operator, flows_analyst, flows_service, flows_customer;


-- == Commands and scheduling ===============================================

-- Operators (and admins) request meter operations; analysts watch them.
GRANT SELECT ON flows.meter_commands, api.meter_commands, api.tariff_rollouts
    TO flows_admin, flows_operator, flows_analyst, flows_service;
GRANT INSERT, UPDATE ON flows.meter_commands TO flows_admin, flows_operator, flows_service;
GRANT EXECUTE ON FUNCTION
    api.request_sync(uuid[], text[]),
    api.send_token(uuid, numeric, text, text, text),
    api.set_future_tariff(jsonb, uuid[], boolean),
    api.read_profile_log(uuid, timestamptz, timestamptz),
    api.set_clock(uuid),
    api.cancel_meter_command(uuid),
    flows.meters_to_command(uuid[], boolean),
    flows.queue_meter_command(uuid, text, jsonb, boolean, text),
    flows.requester()
TO flows_admin, flows_operator;
-- An index of pending top-ups (meter_commands_first_idx) evaluates it on every request.
GRANT EXECUTE ON FUNCTION flows.command_priority(text) TO flows_operator;

-- The workers: claim, renew, finish or fail commands; run the scheduler.
GRANT SELECT, INSERT, UPDATE ON flows.meter_metric_runs TO flows_service, flows_admin;
GRANT SELECT ON flows.meter_metric_runs TO flows_operator, flows_analyst;
GRANT EXECUTE ON FUNCTION
    flows.claim_meter_commands_v1(text, integer, interval),
    flows.claim_meter_commands_v2(text, integer, interval),
    flows.command_priority(text),
    flows.emop_session_patience(),
    flows.expire_meter_commands(),
    flows.fence_meter_command(uuid, text, integer),
    flows.renew_meter_command_leases_v1(text, uuid[], integer[], interval),
    flows.note_meter_command_progress_v1(uuid, text, integer, jsonb),
    flows.record_command_outcomes(uuid[], jsonb[], boolean),
    flows.notify_due_meter_commands(uuid[]),
    flows.finish_meter_commands_v1(text, jsonb),
    flows.finish_meter_command_v1(uuid, text, integer, jsonb),
    flows.goes_before(flows.meter_commands, text),
    flows.command_waiting_before(flows.meter_commands),
    flows.commands_waited_for_v1(text),
    flows.hand_back_meter_command(uuid),
    flows.step_meter_command_v1(uuid, text, integer, jsonb, jsonb, boolean),
    flows.fail_meter_command_v1(uuid, text, integer, text, boolean, interval),
    flows.release_meter_command_v1(uuid, text, integer),
    flows.retry_delay(integer, interval),
    flows.note_metrics_synced(uuid[], jsonb[]),
    flows.metric_interval(text),
    flows.schedule_syncs(),
    flows.schedule_profile_log_reads(integer),
    flows.schedule_tariff_checks(),
    flows.run_scheduler_v1(),
    flows.meter_command_queue_depth_v1(),
    flows.last_meter_event_time_v1(uuid),
    flows.lock_key(text)
TO flows_service, flows_admin;

-- Workers register, beat and stop (flows_service); administrators see them
-- and drain them (api.workers, api.drain_worker).
GRANT SELECT, INSERT, UPDATE, DELETE ON flows.workers TO flows_service;
GRANT SELECT ON flows.workers, api.workers TO flows_admin;
GRANT UPDATE (drain_requested_at, drain_requested_by) ON flows.workers TO flows_admin;
GRANT EXECUTE ON FUNCTION flows.worker_state(flows.workers) TO flows_service, flows_admin;
GRANT EXECUTE ON FUNCTION
    flows.register_worker_v1(text, text, integer, text, integer, text[], interval),
    flows.worker_heartbeat_v1(text, integer, bigint),
    flows.worker_stopped_v1(text, bigint)
TO flows_service;
GRANT EXECUTE ON FUNCTION api.drain_worker(uuid) TO flows_admin;

-- Operators' emop sessions: the emop CLI, logged in as a worker or an administrator.
GRANT EXECUTE ON FUNCTION
    flows.open_emop_session(text, text, text),
    flows.hold_emop_session(uuid, text, interval),
    flows.close_emop_session(uuid, text, text)
TO flows_service, flows_admin;
