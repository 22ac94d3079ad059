-- 0001_foundation: Roles, the flows and api schemas, identity (JWT claims), ESCOs, health.

-- ---- rls/roles.sql ----
-- Roles. Cluster-wide, so shared by every Flows database on the server:
-- created only when missing, never dropped by a rollback.
--
--   flows_owner          NOLOGIN owner of every Flows object; the SECURITY
--                        DEFINER functions run with its rights.
--   flows_authenticator  PostgREST logs in as this (LOGIN NOINHERIT) and
--                        switches to the role named in the JWT.
--   flows_anon           requests without a token: the health check only.
--   flows_admin          all ESCOs, read/write.
--   flows_operator       own ESCO (JWT claim "esco"), read/write.
--   flows_analyst        own ESCO, read-only.
--   flows_service        the workers: every ESCO, meter state and readings.
--   flows_worker         the workers' login (a flows_service).
--   flows_customer       the meters of the customer's own properties, read-only.
--   grafanareader        SQL login for dashboards: an analyst whose ESCO is
--                        configured in flows.sql_login_claims.
DO $roles$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT *
        FROM (VALUES
            ('flows_owner',         'NOLOGIN'),
            ('flows_authenticator', 'LOGIN NOINHERIT'),
            ('flows_anon',          'NOLOGIN'),
            ('flows_admin',         'NOLOGIN'),
            ('flows_operator',      'NOLOGIN'),
            ('flows_analyst',       'NOLOGIN'),
            ('flows_service',       'NOLOGIN'),
            ('flows_customer',      'NOLOGIN'),
            ('flows_worker',        'LOGIN'),
            ('grafanareader',       'LOGIN')
        ) AS roles (name, options)
    LOOP
        IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = r.name) THEN
            EXECUTE format('CREATE ROLE %I %s', r.name, r.options);
        END IF;
    END LOOP;
END
$roles$;

-- The migrating user creates objects as flows_owner (SET ROLE), so it must be a member.
GRANT flows_owner TO CURRENT_USER;

GRANT flows_anon, flows_admin, flows_operator, flows_analyst, flows_service, flows_customer
    TO flows_authenticator;
GRANT flows_analyst TO grafanareader;
GRANT flows_service TO flows_worker;

-- Per-role limits, applied by PostgREST when it switches to the role.
ALTER ROLE flows_anon     SET statement_timeout = '3s';
ALTER ROLE flows_customer SET statement_timeout = '5s';
ALTER ROLE flows_operator SET statement_timeout = '30s';
ALTER ROLE flows_admin    SET statement_timeout = '60s';
ALTER ROLE flows_analyst  SET statement_timeout = '120s';
ALTER ROLE flows_service  SET statement_timeout = '60s';
ALTER ROLE grafanareader  SET statement_timeout = '120s';
ALTER ROLE flows_worker   SET statement_timeout = '60s';

-- ---- schema/schemas.sql ----
-- Two schemas owned by flows_owner: `flows` holds the data, `api` is what
-- PostgREST exposes (views and functions only, never tables).
CREATE EXTENSION IF NOT EXISTS btree_gist;  -- uuid equality in exclusion constraints

CREATE SCHEMA flows AUTHORIZATION flows_owner;
COMMENT ON SCHEMA flows IS 'Flows data: meters, topology, readings. Not exposed over HTTP.';

CREATE SCHEMA api AUTHORIZATION flows_owner;
COMMENT ON SCHEMA api IS
    'Flows HTTP API (PostgREST). Views named as the documented endpoints, and RPC functions. '
    'Authenticate with a JWT bearer token; rows are limited to the ESCO in the token.';

-- No function is callable by PUBLIC unless granted explicitly (sql/rls/privileges.sql).
ALTER DEFAULT PRIVILEGES FOR ROLE flows_owner REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;

-- Everything below is created by, and owned by, flows_owner.
SET LOCAL ROLE flows_owner;

-- ---- schema/common.sql ----
-- Small helpers shared by many tables and views.

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

-- UK local time. Storage is UTC; days and months for reports and billing are
-- UK days (00:00 Europe/London), which have 46 or 50 half hours when the
-- clocks change. Plain SQL, no SET clause, so the planner can inline them.
CREATE FUNCTION flows.uk_day(ts timestamptz) RETURNS date
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN (ts AT TIME ZONE 'Europe/London')::date;
COMMENT ON FUNCTION flows.uk_day(timestamptz) IS 'The UK calendar day a UTC instant falls on.';

CREATE FUNCTION flows.uk_day_start(day date) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN day::timestamp AT TIME ZONE 'Europe/London';
COMMENT ON FUNCTION flows.uk_day_start(date) IS 'The UTC instant a UK calendar day starts (00:00 Europe/London).';

CREATE FUNCTION flows.uk_month(day date) RETURNS date
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN date_trunc('month', day::timestamp)::date;
COMMENT ON FUNCTION flows.uk_month(date) IS 'First day of the month of a UK calendar day.';

-- An ISO 8601 time with an explicit offset ('2026-11-21T10:00:00Z', '...+01:00'):
-- the only unambiguous way to pass an instant as text.
CREATE FUNCTION flows.is_iso_time(value text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN value ~ '^\d{4}-\d\d-\d\d[T ]\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d(:?\d\d)?)$';

-- ---- schema/escos.sql ----
-- ESCOs (energy service companies): the tenant boundary. Every configuration
-- row carries its ESCO; composite foreign keys (parent id, esco) make it
-- impossible to link rows of two ESCOs together.
CREATE TABLE flows.escos (
    id                    uuid          PRIMARY KEY DEFAULT gen_random_uuid(),
    code                  text          NOT NULL,
    name                  text          NOT NULL,
    low_balance_threshold numeric(8, 2) NOT NULL DEFAULT 15.00,
    created_at            timestamptz   NOT NULL DEFAULT now(),
    CONSTRAINT escos_code_key UNIQUE (code),
    CONSTRAINT escos_code_format CHECK (code ~ '^[A-Z][A-Z0-9]{1,15}$'),
    CONSTRAINT escos_name_not_blank CHECK (btrim(name) <> ''),
    CONSTRAINT escos_low_balance_threshold_range CHECK (low_balance_threshold BETWEEN 0 AND 1000)
);
COMMENT ON TABLE flows.escos IS 'Energy service companies; the tenant boundary.';
COMMENT ON COLUMN flows.escos.low_balance_threshold IS 'GBP; meters_low_balance lists prepay meters below it.';

-- ---- rls/claims.sql ----
-- Who is asking: the one place claims are read.
--
-- PostgREST logs in as flows_authenticator and puts the verified claims of the
-- request's JWT in the `request.jwt.claims` setting. Any other login (Grafana's
-- grafanareader, an analyst's psql) could set that setting itself, so for them
-- the claims come from flows.sql_login_claims, which only administrators write.

CREATE TABLE flows.sql_login_claims (
    login  name  PRIMARY KEY,
    claims jsonb NOT NULL,
    CONSTRAINT sql_login_claims_object CHECK (jsonb_typeof(claims) = 'object'),
    CONSTRAINT sql_login_claims_not_authenticator CHECK (login <> 'flows_authenticator')
);
COMMENT ON TABLE flows.sql_login_claims IS
    'Claims of SQL logins that are not PostgREST, e.g. grafanareader -> {"esco": "WLCE"}.';

-- SECURITY DEFINER so that sql_login_claims needs no grants at all.
CREATE FUNCTION flows.jwt_claims() RETURNS jsonb
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path = ''
AS $$
    SELECT CASE
        WHEN session_user = 'flows_authenticator'
            THEN coalesce(nullif(pg_catalog.current_setting('request.jwt.claims', true), ''), '{}')::jsonb
        ELSE coalesce((SELECT c.claims FROM flows.sql_login_claims AS c WHERE c.login = session_user), '{}')
    END
$$;
COMMENT ON FUNCTION flows.jwt_claims() IS
    'Claims of the caller: the JWT''s for PostgREST requests, flows.sql_login_claims for other logins, else {}.';

-- The caller's ESCO from the "esco" claim (an ESCO code, e.g. WLCE). Null
-- when there is no such claim; an error when it names no ESCO the caller can
-- see (a token for an ESCO that does not exist must not look like an empty one).
CREATE FUNCTION flows.current_esco_id() RETURNS uuid
LANGUAGE plpgsql STABLE
SET search_path = ''
AS $$
DECLARE
    claimed text := flows.jwt_claims() ->> 'esco';
    esco_id uuid;
BEGIN
    IF claimed IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT e.id INTO esco_id FROM flows.escos AS e WHERE e.code = claimed;
    IF esco_id IS NULL THEN
        RAISE EXCEPTION 'unknown ESCO % in the esco claim', pg_catalog.quote_literal(claimed)
            USING ERRCODE = 'invalid_authorization_specification',
                  HINT = 'mint a token for an existing ESCO code (flows token --esco CODE)';
    END IF;
    RETURN esco_id;
END
$$;
COMMENT ON FUNCTION flows.current_esco_id() IS 'ESCO id named by the "esco" claim, or null without one.';

-- Property ids of a customer, from the "properties" claim (a JSON array).
CREATE FUNCTION flows.customer_property_ids() RETURNS uuid[]
LANGUAGE sql STABLE
SET search_path = ''
AS $$
    SELECT coalesce(array_agg(p.value::uuid), '{}')
    FROM pg_catalog.jsonb_array_elements_text(
        CASE WHEN pg_catalog.jsonb_typeof(flows.jwt_claims() -> 'properties') = 'array'
             THEN flows.jwt_claims() -> 'properties' ELSE '[]' END) AS p (value)
$$;
COMMENT ON FUNCTION flows.customer_property_ids() IS 'Property ids in the "properties" claim of a customer token.';

-- ---- rpc/health.sql ----
CREATE FUNCTION api.health() RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = ''
AS $$
    SELECT pg_catalog.jsonb_build_object('status', 'ok', 'database_time', pg_catalog.now())
$$;
COMMENT ON FUNCTION api.health() IS 'Liveness of the API and its database; needs no token.';

-- ---- rpc/escos.sql ----
CREATE VIEW api.escos WITH (security_invoker = true) AS
SELECT id, code, name, low_balance_threshold, created_at
FROM flows.escos;

COMMENT ON VIEW api.escos IS 'Energy service companies (ESCOs). Operators see their own; admins all.';
COMMENT ON COLUMN api.escos.code IS 'Short unique code, e.g. WLCE; the "esco" claim of JWTs.';
COMMENT ON COLUMN api.escos.low_balance_threshold IS 'GBP; meters_low_balance lists prepay meters below it.';

-- ---- rls/privileges.sql: Foundation ----
GRANT USAGE ON SCHEMA api
    TO flows_anon, flows_admin, flows_operator, flows_analyst, flows_service, flows_customer;
GRANT USAGE ON SCHEMA flows
    TO flows_admin, flows_operator, flows_analyst, flows_service, flows_customer;

-- Helpers that policies, views and column defaults call.
GRANT EXECUTE ON FUNCTION
    flows.jwt_claims(),
    flows.current_esco_id(),
    flows.customer_property_ids(),
    flows.uk_day(timestamptz),
    flows.uk_day_start(date),
    flows.uk_month(date),
    flows.is_iso_time(text)
TO flows_admin, flows_operator, flows_analyst, flows_service, flows_customer;

GRANT EXECUTE ON FUNCTION api.health()
    TO flows_anon, flows_admin, flows_operator, flows_analyst, flows_service, flows_customer;

-- ESCOs: admins manage them; operators may rename theirs and set its threshold.
GRANT SELECT ON flows.escos, api.escos
    TO flows_operator, flows_analyst, flows_service, flows_customer;
GRANT UPDATE (name, low_balance_threshold) ON flows.escos, api.escos TO flows_operator;
GRANT SELECT, INSERT, UPDATE, DELETE ON flows.escos, api.escos TO flows_admin;

-- ---- rls/policies.sql: Foundation ----
ALTER TABLE flows.escos ENABLE ROW LEVEL SECURITY;
CREATE POLICY escos_all ON flows.escos TO flows_admin, flows_service
    USING (true);
CREATE POLICY escos_own ON flows.escos TO flows_operator, flows_analyst, flows_customer
    USING (code = (SELECT flows.jwt_claims() ->> 'esco'));

-- Claims of SQL logins: no policy, so only its owner (flows.jwt_claims) reads it.
ALTER TABLE flows.sql_login_claims ENABLE ROW LEVEL SECURITY;
