-- 0001 foundation: roles, the flows and api schemas, ESCOs and the meter register,
-- the first API views and RPCs, privileges and row-level security.

-- ---- rls/roles.sql ----
-- Roles. Cluster-wide, so shared by every Flows database on the server:
-- created only when missing, never dropped by a rollback.
--
--   flows_authenticator  PostgREST logs in as this (LOGIN NOINHERIT) and
--                        switches to the role named in the JWT.
--   flows_anon           requests without a token: the health check only.
--   flows_admin          all ESCOs, read/write.
--   flows_operator       own ESCO (JWT claim "esco"), read/write.
--   flows_analyst        own ESCO, read-only.
--   flows_service        the workers: every ESCO, meter state and commands.
--   flows_customer       only the meters of the customer's own properties.
--   flows_owner          NOLOGIN owner of the SECURITY DEFINER functions.
DO $roles$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT *
        FROM (VALUES
            ('flows_authenticator', 'LOGIN NOINHERIT'),
            ('flows_anon',          'NOLOGIN'),
            ('flows_admin',         'NOLOGIN'),
            ('flows_operator',      'NOLOGIN'),
            ('flows_analyst',       'NOLOGIN'),
            ('flows_service',       'NOLOGIN'),
            ('flows_customer',      'NOLOGIN'),
            ('flows_owner',         'NOLOGIN')
        ) AS roles (name, options)
    LOOP
        IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = r.name) THEN
            EXECUTE format('CREATE ROLE %I %s', r.name, r.options);
        END IF;
    END LOOP;
END
$roles$;

GRANT flows_anon, flows_admin, flows_operator, flows_analyst, flows_service, flows_customer
    TO flows_authenticator;

-- Per-role limits, applied by PostgREST when it switches to the role.
ALTER ROLE flows_anon     SET statement_timeout = '3s';
ALTER ROLE flows_customer SET statement_timeout = '5s';
ALTER ROLE flows_operator SET statement_timeout = '30s';
ALTER ROLE flows_admin    SET statement_timeout = '60s';
ALTER ROLE flows_analyst  SET statement_timeout = '120s';
ALTER ROLE flows_service  SET statement_timeout = '60s';

-- ---- schema/schemas.sql ----
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

-- ---- schema/escos.sql ----
-- ESCOs (energy service companies): the tenant boundary. Every row in Flows
-- belongs to exactly one ESCO, directly or through its parents.
CREATE TABLE flows.escos (
    id         uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    code       text        NOT NULL,
    name       text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT escos_code_key UNIQUE (code),
    CONSTRAINT escos_code_format CHECK (code ~ '^[A-Z][A-Z0-9]{1,15}$'),
    CONSTRAINT escos_name_not_blank CHECK (btrim(name) <> '')
);
COMMENT ON TABLE flows.escos IS 'Energy service companies; the tenant boundary.';

-- ---- schema/meters.sql ----
-- The meter register: one row per physical meter and its configuration.
CREATE TABLE flows.meter_registry (
    id                                  uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    serial                              text        NOT NULL,
    name                                text,
    ip_address                          inet,
    hardware                            text,
    firmware_version                    text,
    mode                                text        NOT NULL DEFAULT 'active',
    esco                                uuid        NOT NULL REFERENCES flows.escos (id),
    prepay_enabled                      boolean     NOT NULL DEFAULT true,
    daylight_savings_correction_enabled boolean     NOT NULL DEFAULT false,
    single_meter_app                    boolean     NOT NULL DEFAULT false,
    iccid                               text,
    installation_status                 text,
    created_at                          timestamptz NOT NULL DEFAULT now(),
    updated_at                          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT meter_registry_serial_key UNIQUE (serial),
    CONSTRAINT meter_registry_ip_address_key UNIQUE (ip_address),
    CONSTRAINT meter_registry_iccid_key UNIQUE (iccid),
    -- Emlite serials: EML + 10 digits (single phase), EMP1AX/EMP1CX + digits (three phase).
    CONSTRAINT meter_registry_serial_format CHECK (serial ~ '^(EML[0-9]{10}|EMP1[AC]X[0-9]{6,12})$'),
    CONSTRAINT meter_registry_mode_valid CHECK (mode IN ('active', 'passive')),
    CONSTRAINT meter_registry_iccid_format CHECK (iccid ~ '^[0-9]{18,22}F?$')
);
COMMENT ON TABLE flows.meter_registry IS
    'Meter configuration. mode active = synced from the meter; passive = digital twin, never contacted.';

CREATE INDEX meter_registry_esco_idx ON flows.meter_registry (esco);

CREATE TRIGGER meter_registry_touch BEFORE UPDATE ON flows.meter_registry
    FOR EACH ROW EXECUTE FUNCTION flows.touch_updated_at();

-- ---- rls/claims.sql ----
-- Who is asking: the one place JWT claims are read.
-- PostgREST puts the verified claims of the request's token in the
-- `request.jwt.claims` setting; SQL logins (Grafana, psql) have none.

CREATE FUNCTION flows.jwt_claims() RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = ''
AS $$
    SELECT coalesce(nullif(pg_catalog.current_setting('request.jwt.claims', true), ''), '{}')::jsonb
$$;
COMMENT ON FUNCTION flows.jwt_claims() IS 'Claims of the current request''s JWT, {} outside PostgREST.';

-- The ESCO of the caller, from the "esco" claim (an ESCO code, e.g. WLCE).
-- Runs with the caller's rights: an operator can see its own ESCO row, so the
-- lookup succeeds exactly when the claim names an ESCO the caller may see.
CREATE FUNCTION flows.current_esco_id() RETURNS uuid
LANGUAGE sql STABLE
SET search_path = ''
AS $$
    SELECT e.id FROM flows.escos AS e WHERE e.code = flows.jwt_claims() ->> 'esco'
$$;
COMMENT ON FUNCTION flows.current_esco_id() IS 'ESCO id named by the JWT claim "esco", or null.';

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
SELECT id, code, name, created_at
FROM flows.escos;

COMMENT ON VIEW api.escos IS 'Energy service companies (ESCOs). Operators see their own; admins all.';
COMMENT ON COLUMN api.escos.code IS 'Short unique code, e.g. WLCE; the "esco" claim of JWTs.';

-- ---- rpc/meter_registry.sql ----
CREATE VIEW api.meter_registry WITH (security_invoker = true) AS
SELECT
    id,
    serial,
    name,
    ip_address,
    hardware,
    firmware_version,
    mode,
    esco,
    prepay_enabled,
    daylight_savings_correction_enabled,
    single_meter_app,
    iccid,
    installation_status,
    created_at,
    updated_at
FROM flows.meter_registry;

-- Operators registering a meter need not name their own ESCO.
ALTER VIEW api.meter_registry ALTER COLUMN esco SET DEFAULT flows.current_esco_id();

COMMENT ON VIEW api.meter_registry IS
    'Meters and their configuration. POST to register a meter (operator, admin).';
COMMENT ON COLUMN api.meter_registry.serial IS 'Emlite serial: EML + 10 digits, or EMP1AX/EMP1CX + digits (three phase).';
COMMENT ON COLUMN api.meter_registry.ip_address IS 'Address on the private 4G network; EMOP port 8080.';
COMMENT ON COLUMN api.meter_registry.hardware IS 'Model string read from the meter, e.g. C1.w (twin element), P1.ax (three phase).';
COMMENT ON COLUMN api.meter_registry.mode IS 'active: synced from the meter; passive: digital twin, never contacted.';
COMMENT ON COLUMN api.meter_registry.esco IS 'Owning ESCO (id); defaults to the caller''s ESCO.';
COMMENT ON COLUMN api.meter_registry.daylight_savings_correction_enabled IS
    'If set, tariff activation times are meter-local UK time (BST in summer).';
COMMENT ON COLUMN api.meter_registry.iccid IS 'SIM card id.';

-- ---- rpc/get_meters_for_cli.sql ----
-- Active meters for command-line tools, optionally narrowed to an ESCO and
-- a feeder. feeder_filter 'null' (the string) means "meters on no feeder".
CREATE FUNCTION api.get_meters_for_cli(esco_filter text DEFAULT NULL, feeder_filter text DEFAULT NULL)
RETURNS TABLE (
    id               uuid,
    ip_address       inet,
    serial           text,
    name             text,
    single_meter_app boolean,
    esco             text,
    csq              integer,
    health           text,
    hardware         text,
    feeder           text
)
LANGUAGE sql STABLE
SET search_path = ''
AS $$
    SELECT
        m.id,
        m.ip_address,
        m.serial,
        m.name,
        m.single_meter_app,
        e.code,
        NULL::integer,
        NULL::text,
        m.hardware,
        NULL::text
    FROM flows.meter_registry AS m
    JOIN flows.escos AS e ON e.id = m.esco
    WHERE m.mode = 'active'
      AND (esco_filter IS NULL OR e.code = esco_filter)
      AND (feeder_filter IS NULL OR feeder_filter = 'null')
    ORDER BY e.code, m.serial
$$;
COMMENT ON FUNCTION api.get_meters_for_cli(text, text) IS
    'Active meters with what the CLI needs to reach them. esco_filter: ESCO code; '
    'feeder_filter: feeder name, or ''null'' for meters on no feeder.';

-- ---- rls/privileges.sql ----
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

-- ---- rls/policies.sql ----
-- Row-level security: which rows each role sees and may write.
-- admin and service: every ESCO. operator and analyst: the ESCO of the JWT
-- "esco" claim. (select ...) makes PostgreSQL evaluate the helper once per
-- statement instead of once per row.

ALTER TABLE flows.escos ENABLE ROW LEVEL SECURITY;

CREATE POLICY escos_all ON flows.escos
    TO flows_admin, flows_service
    USING (true);
CREATE POLICY escos_own ON flows.escos
    FOR SELECT TO flows_operator, flows_analyst, flows_customer
    USING (code = (SELECT flows.jwt_claims() ->> 'esco'));


ALTER TABLE flows.meter_registry ENABLE ROW LEVEL SECURITY;

CREATE POLICY meter_registry_all ON flows.meter_registry
    TO flows_admin, flows_service
    USING (true);
CREATE POLICY meter_registry_own_esco ON flows.meter_registry
    TO flows_operator, flows_analyst
    USING (esco = (SELECT flows.current_esco_id()));
