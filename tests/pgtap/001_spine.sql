-- The security surface of the spine: roles, exposed schema, privileges.
BEGIN;
SELECT plan(14);

SELECT has_role('flows_authenticator');
SELECT ok((SELECT rolcanlogin AND NOT rolinherit FROM pg_roles WHERE rolname = 'flows_authenticator'),
          'authenticator logs in and does not inherit');
SELECT ok(NOT (SELECT rolcanlogin FROM pg_roles WHERE rolname = 'flows_anon'), 'anon cannot log in');
SELECT is_member_of('flows_anon', 'flows_authenticator');
SELECT is_member_of('flows_operator', 'flows_authenticator');

SELECT has_schema('api');
SELECT has_schema('flows');
SELECT is((SELECT count(*)::int FROM pg_tables WHERE schemaname = 'api'), 0, 'api exposes no tables');

SELECT has_view('api', 'meter_registry', 'api.meter_registry');
SELECT ok((SELECT 'security_invoker=true' = ANY (reloptions) FROM pg_class WHERE oid = 'api.meter_registry'::regclass),
          'api.meter_registry is security_invoker');
SELECT col_is_unique('flows', 'meter_registry', ARRAY['serial'], 'meter serials are unique');
SELECT function_privs_are('api', 'health', ARRAY[]::text[], 'flows_anon', ARRAY['EXECUTE']);
SELECT function_privs_are('api', 'get_meters_for_cli', ARRAY['text', 'text'], 'flows_anon', ARRAY[]::text[]);
SELECT table_privs_are('api', 'meter_registry', 'flows_anon', ARRAY[]::text[]);

SELECT * FROM finish();
ROLLBACK;
