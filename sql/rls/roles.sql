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
--   flows_monitor        the Prometheus exporter's login: pg_monitor and the
--                        monitoring views (counts per ESCO), nothing else.
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
            ('grafanareader',       'LOGIN'),
            ('flows_monitor',       'LOGIN')
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
GRANT pg_monitor TO flows_monitor;

-- Per-role limits, applied by PostgREST when it switches to the role.
ALTER ROLE flows_anon     SET statement_timeout = '3s';
ALTER ROLE flows_customer SET statement_timeout = '5s';
ALTER ROLE flows_operator SET statement_timeout = '30s';
ALTER ROLE flows_admin    SET statement_timeout = '60s';
ALTER ROLE flows_analyst  SET statement_timeout = '120s';
ALTER ROLE flows_service  SET statement_timeout = '60s';
ALTER ROLE grafanareader  SET statement_timeout = '120s';
ALTER ROLE flows_worker   SET statement_timeout = '60s';
ALTER ROLE flows_monitor  SET statement_timeout = '10s';
