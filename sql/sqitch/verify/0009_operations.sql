-- Verify flows:0009_operations
BEGIN;
DO $$
BEGIN
    PERFORM id, at, esco, relation, operation, row_key, before, after, actor_sub, actor_role, actor_esco, api_key,
            request_id, db_user, transaction_id
    FROM flows.audit_log WHERE false;
    PERFORM id, esco, name, role, expires_at, revoked_at, status FROM api.api_keys WHERE false;
    PERFORM id, relation, row_key FROM api.audit_log WHERE false;
    PERFORM kind, pending, oldest_due_seconds FROM monitoring.command_queue;
    PERFORM esco, meters, unhealthy, offline FROM monitoring.fleet WHERE false;
    PERFORM flows.check_request();
    PERFORM esco FROM flows.meter_shadows WHERE false;
    ASSERT (SELECT count(*) FROM pg_catalog.pg_trigger WHERE tgname = 'audit_insert'
            AND tgrelid = 'flows.meter_registry'::regclass) = 1, 'meter_registry is not audited';
    ASSERT NOT pg_catalog.has_table_privilege('flows_owner', 'flows.audit_log', 'UPDATE, DELETE, TRUNCATE'),
        'the audit log can be changed by its owner';
    ASSERT pg_catalog.has_function_privilege('flows_anon', 'flows.check_request()', 'EXECUTE'),
        'anonymous requests cannot run the request check';
    ASSERT pg_catalog.pg_has_role('flows_monitor', 'pg_monitor', 'MEMBER'), 'flows_monitor is not pg_monitor';
END
$$;
ROLLBACK;
