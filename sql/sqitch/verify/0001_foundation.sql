-- Verify flows:0001_foundation
BEGIN;
DO $$
BEGIN
    ASSERT (SELECT count(*) FROM pg_catalog.pg_roles
            WHERE rolname IN ('flows_authenticator', 'flows_anon', 'flows_admin', 'flows_operator',
                              'flows_analyst', 'flows_service', 'flows_customer', 'flows_owner')) = 8,
        'roles missing';
    PERFORM id, code, name, created_at FROM flows.escos WHERE false;
    PERFORM id, serial, name, ip_address, hardware, mode, esco FROM flows.meter_registry WHERE false;
    PERFORM id, serial, name, esco FROM api.meter_registry WHERE false;
    PERFORM * FROM api.get_meters_for_cli(NULL, NULL) WHERE false;
    ASSERT pg_catalog.has_function_privilege('flows_anon', 'api.health()', 'EXECUTE'), 'anon cannot call health';
    ASSERT NOT pg_catalog.has_table_privilege('flows_anon', 'api.meter_registry', 'SELECT'), 'anon reads meters';
    ASSERT (SELECT relrowsecurity FROM pg_catalog.pg_class WHERE oid = 'flows.meter_registry'::regclass),
        'meter_registry without RLS';
END
$$;
ROLLBACK;
