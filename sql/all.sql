-- The readable source of the Flows database, in load order:
--   psql -v ON_ERROR_STOP=1 -f sql/all.sql
-- Migrations (sql/migrations) must produce exactly this schema; a test compares
-- the two (tests/test_migrations.py). Load order: roles, data schema, identity
-- helpers, API, then the security surface.
\ir rls/roles.sql
\ir schema/schemas.sql
\ir schema/escos.sql
\ir schema/meters.sql
\ir rls/claims.sql
\ir rpc/health.sql
\ir rpc/escos.sql
\ir rpc/meter_registry.sql
\ir rpc/get_meters_for_cli.sql
\ir rls/privileges.sql
\ir rls/policies.sql
