-- Verify flows:0006_code_health
BEGIN;
DO $$
BEGIN
    ASSERT flows.lock_key('command_claims') = 2052, 'the advisory-lock registry';
    PERFORM max_running_commands FROM api.escos WHERE false;
    ASSERT (SELECT array_agg(model ORDER BY model) FROM flows.hardware_kinds WHERE phases = 3) = '{P1.ax,P1.cx}',
        'hardware kinds not loaded';
    ASSERT flows.is_three_phase(pg_catalog.jsonb_populate_record(NULL::flows.meter_registry,
                                                                 '{"serial": "EMP1AX2500000001"}')),
        'an EMP1AX meter is three phase before its hardware is known';
    PERFORM meter_id, observed_at, prepay_enabled FROM flows.meter_state_rows('[]');
    ASSERT flows.newer(1, now(), 2, now() - interval '1 second') = 1, 'flows.newer keeps the later value';
    PERFORM * FROM flows.claim_meter_commands_v1('verify', 0);
    PERFORM pending, running FROM flows.meter_command_queue_depth_v1();
    ASSERT flows.last_meter_event_time_v1(gen_random_uuid()) IS NULL, 'last_meter_event_time_v1';
    ASSERT pg_catalog.to_regprocedure('flows.finish_meter_command_v1(uuid, text, integer, jsonb)') IS NOT NULL
       AND pg_catalog.to_regprocedure('flows.run_scheduler_v1()') IS NOT NULL
       AND pg_catalog.to_regprocedure('flows.claim_meter_commands(text, integer, interval)') IS NULL,
        'worker functions are versioned';
    ASSERT pg_catalog.has_function_privilege(
        'flows_service', 'flows.renew_meter_command_leases_v1(text, uuid[], integer[], interval)', 'EXECUTE'),
        'workers cannot renew leases';
    ASSERT pg_catalog.has_table_privilege('flows_operator', 'flows.hardware_kinds', 'SELECT'),
        'operators cannot read hardware kinds';
    ASSERT (SELECT pg_catalog.pg_get_constraintdef(oid) FROM pg_catalog.pg_constraint
            WHERE conname = 'properties_site_plot_key') = 'UNIQUE (site, plot, esco)',
        'the ESCO is part of natural keys';
END
$$;
ROLLBACK;
