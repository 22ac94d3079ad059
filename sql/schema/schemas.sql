-- Two schemas: `flows` holds the data, `api` is what PostgREST exposes
-- (views and functions only, never tables).
CREATE SCHEMA flows;
COMMENT ON SCHEMA flows IS 'Flows data: meters, topology, readings. Not exposed over HTTP.';

CREATE SCHEMA api;
COMMENT ON SCHEMA api IS
    'Flows HTTP API (PostgREST). Views named as the documented endpoints, and RPC functions. '
    'Authenticate with a JWT bearer token; rows are limited to the ESCO in the token.';

-- No function is callable by PUBLIC unless granted explicitly (sql/rls/privileges.sql).
ALTER DEFAULT PRIVILEGES REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;

-- Keeps updated_at honest on every table that has one.
CREATE FUNCTION flows.touch_updated_at() RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    NEW.updated_at := pg_catalog.now();
    RETURN NEW;
END
$$;
