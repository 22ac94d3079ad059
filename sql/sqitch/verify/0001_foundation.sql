-- Verify flows:0001_foundation
BEGIN;
DO $$
BEGIN
    ASSERT (SELECT count(*) FROM pg_catalog.pg_roles
            WHERE rolname IN ('flows_owner', 'flows_authenticator', 'flows_anon', 'flows_admin', 'flows_operator',
                              'flows_analyst', 'flows_service', 'flows_customer', 'flows_worker',
                              'grafanareader')) = 10,
        'roles missing';
    ASSERT (SELECT rolcanlogin FROM pg_catalog.pg_roles WHERE rolname = 'flows_worker')
           AND pg_catalog.pg_has_role('flows_worker', 'flows_service', 'MEMBER'),
        'flows_worker is not a login of flows_service';
    ASSERT (SELECT nspowner = 'flows_owner'::regrole FROM pg_catalog.pg_namespace WHERE nspname = 'flows'),
        'schema flows not owned by flows_owner';
    PERFORM id, code, name, low_balance_threshold, created_at FROM flows.escos WHERE false;
    PERFORM login, claims FROM flows.sql_login_claims WHERE false;
    PERFORM id, code, name FROM api.escos WHERE false;
    ASSERT flows.uk_day('2026-06-30 23:30+00') = '2026-07-01', 'uk_day ignores BST';
    ASSERT pg_catalog.has_function_privilege('flows_anon', 'api.health()', 'EXECUTE'), 'anon cannot call health';
    ASSERT (SELECT relrowsecurity FROM pg_catalog.pg_class WHERE oid = 'flows.escos'::regclass), 'escos without RLS';
END
$$;
ROLLBACK;
