-- Every grant of the API in one place. Tables are reached only through the
-- security_invoker views in `api`, so a role needs the privilege on both, and
-- row-level security (policies.sql) decides which rows.

GRANT USAGE ON SCHEMA api
    TO flows_anon, flows_admin, flows_operator, flows_analyst, flows_service, flows_customer;
GRANT USAGE ON SCHEMA flows
    TO flows_admin, flows_operator, flows_analyst, flows_service, flows_customer;

-- Helpers the policies and view defaults call.
GRANT EXECUTE ON FUNCTION flows.jwt_claims(), flows.current_esco_id()
    TO flows_admin, flows_operator, flows_analyst, flows_service, flows_customer;

-- Health: the one thing anonymous callers may do.
GRANT EXECUTE ON FUNCTION api.health()
    TO flows_anon, flows_admin, flows_operator, flows_analyst, flows_service, flows_customer;

-- ESCOs: admins manage them; everyone else reads their own.
GRANT SELECT ON flows.escos, api.escos TO flows_operator, flows_analyst, flows_service, flows_customer;
GRANT SELECT, INSERT, UPDATE, DELETE ON flows.escos, api.escos TO flows_admin;

-- Meters
GRANT SELECT ON flows.meter_registry, api.meter_registry TO flows_analyst, flows_service, flows_customer;
GRANT SELECT, INSERT, UPDATE, DELETE ON flows.meter_registry, api.meter_registry
    TO flows_admin, flows_operator;

GRANT EXECUTE ON FUNCTION api.get_meters_for_cli(text, text)
    TO flows_admin, flows_operator, flows_analyst, flows_service;
