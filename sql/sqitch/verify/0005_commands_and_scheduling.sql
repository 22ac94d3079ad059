-- Verify flows:0005_commands_and_scheduling
BEGIN;
DO $$
BEGIN
    PERFORM id, esco, meter_id, kind, parameters, status, attempts, max_attempts, run_at, lease_owner,
            lease_expires_at, progress, result, last_error, idempotency_key, batch_id
    FROM flows.meter_commands WHERE false;
    PERFORM max_running_commands FROM flows.escos WHERE false;
    PERFORM meter_id, metric, last_requested_at, last_synced_at FROM flows.meter_metric_runs WHERE false;
    -- claim_meter_commands became claim_meter_commands_v1 in 0006: either passes a later `sqitch verify`
    ASSERT pg_catalog.to_regprocedure('flows.claim_meter_commands(text, integer, interval)') IS NOT NULL
        OR pg_catalog.to_regprocedure('flows.claim_meter_commands_v1(text, integer, interval)') IS NOT NULL,
        'no claim function';
    PERFORM rollout_id, summary FROM api.tariff_rollouts WHERE false;
    ASSERT pg_catalog.has_function_privilege('flows_operator', 'api.send_token(uuid, numeric, text, text, text)',
                                             'EXECUTE'), 'operators cannot send tokens';
    ASSERT EXISTS (SELECT FROM pg_catalog.pg_trigger WHERE tgname = 'meter_commands_notify_insert'),
        'no NOTIFY on new commands';
END
$$;
ROLLBACK;
