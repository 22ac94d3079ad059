-- Verify flows:0010_meter_operations
BEGIN;
DO $$
DECLARE
    esco uuid;
    meter uuid;
    token uuid;
    backfill uuid;
    session uuid;
BEGIN
    PERFORM id, name, host, pid, version, concurrency, escos, heartbeat_interval, in_flight, commands_per_minute,
            drain_requested_at, stopped_at
    FROM flows.workers WHERE false;
    PERFORM id, state, esco_codes, commands_per_minute, heartbeat_at FROM api.workers WHERE false;
    ASSERT flows.command_priority('send_token') < flows.command_priority('emop_session')
       AND flows.command_priority('emop_session') < flows.command_priority('read_profile_log'),
        'top-ups go first, then operators';
    ASSERT pg_catalog.has_function_privilege('flows_service',
        'flows.step_meter_command_v1(uuid, text, integer, jsonb, jsonb, boolean)', 'EXECUTE')
       AND pg_catalog.has_function_privilege('flows_service', 'flows.finish_meter_commands_v1(text, jsonb)', 'EXECUTE')
       AND pg_catalog.has_function_privilege('flows_service', 'flows.claim_meter_commands_v2(text, integer, interval)',
                                             'EXECUTE')
       AND pg_catalog.has_function_privilege('flows_service',
           'flows.register_worker_v1(text, text, integer, text, integer, text[], interval)', 'EXECUTE'),
        'workers cannot call the new functions';
    ASSERT pg_catalog.has_function_privilege('flows_admin', 'api.drain_worker(uuid)', 'EXECUTE')
       AND NOT pg_catalog.has_function_privilege('flows_operator', 'api.drain_worker(uuid)', 'EXECUTE')
       AND NOT pg_catalog.has_table_privilege('flows_operator', 'api.workers', 'SELECT'),
        'draining and listing workers is for administrators';
    ASSERT (SELECT relrowsecurity FROM pg_catalog.pg_class WHERE oid = 'flows.workers'::regclass),
        'flows.workers has row-level security';
    -- a top-up waiting for a meter makes a running backfill give the meter up at its next step
    INSERT INTO flows.escos (code, name) VALUES ('VERIFY0010', 'verify') RETURNING id INTO esco;
    meter := (api.register_meter(serial => 'EML0010000001', hardware => 'C1.w', esco => esco) ->> 'id')::uuid;
    INSERT INTO flows.meter_commands (esco, meter_id, kind, parameters, requested_by)
    VALUES (esco, meter, 'read_profile_log', '{"from": "2026-01-01T00:00:00Z", "to": "2026-01-31T00:00:00Z"}',
            'verify') RETURNING id INTO backfill;
    ASSERT (SELECT count(*) FROM flows.claim_meter_commands_v2('verify-worker', 10)) = 1, 'claim_v2 claims';
    INSERT INTO flows.meter_commands (esco, meter_id, kind, parameters, requested_by)
    VALUES (esco, meter, 'send_token', '{"amount": "5"}', 'verify') RETURNING id INTO token;
    ASSERT flows.step_meter_command_v1(backfill, 'verify-worker', 1, '{}', '{"cursor": "x"}') = 'yielded',
        'a backfill yields to a waiting top-up';
    ASSERT (SELECT id FROM flows.claim_meter_commands_v2('verify-worker', 10)) = token, 'the top-up goes next';
    session := flows.open_emop_session('EML0010000001', 'verify-emop', 'csq');
    ASSERT NOT (SELECT held FROM flows.hold_emop_session(session, 'verify-emop')), 'the meter is busy';
    ASSERT flows.finish_meter_commands_v1('verify-worker', pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object(
               'id', token, 'attempt', 1, 'outcome', '{"result": {}}'::jsonb))) = '{}', 'the batch finishes';
    ASSERT (SELECT held FROM flows.hold_emop_session(session, 'verify-emop')), 'the operator holds the meter next';
    ASSERT flows.close_emop_session(session, 'verify-emop') = 'done', 'the session closes';
END
$$;
ROLLBACK;
