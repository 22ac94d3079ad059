-- Schemas owned by flows_owner: `flows` holds the meter data, `billing` the
-- money side (customers, accounts, tariffs, statements), `api` is what
-- PostgREST exposes (views and functions only, never tables).
CREATE EXTENSION IF NOT EXISTS btree_gist;  -- uuid equality in exclusion constraints

CREATE SCHEMA flows AUTHORIZATION flows_owner;
COMMENT ON SCHEMA flows IS 'Flows data: meters, topology, readings. Not exposed over HTTP.';

CREATE SCHEMA billing AUTHORIZATION flows_owner;
COMMENT ON SCHEMA billing IS 'Flows money: customers, accounts, tariffs, statements. Not exposed over HTTP.';

CREATE SCHEMA api AUTHORIZATION flows_owner;
COMMENT ON SCHEMA api IS
    'Flows HTTP API (PostgREST). Views named as the documented endpoints, and RPC functions. '
    'Authenticate with a JWT bearer token; rows are limited to the ESCO in the token.';

-- No function is callable by PUBLIC unless granted explicitly (sql/rls/privileges.sql).
ALTER DEFAULT PRIVILEGES FOR ROLE flows_owner REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;

CREATE SCHEMA monitoring AUTHORIZATION flows_owner;
COMMENT ON SCHEMA monitoring IS 'Counts for the Prometheus exporter (flows_monitor): queue, fleet, outcomes.';

CREATE SCHEMA gdpr AUTHORIZATION flows_owner;
COMMENT ON SCHEMA gdpr IS
    'Personal data: its registry, consents, erasures, the export and erasure of a customer. Not exposed over HTTP.';
