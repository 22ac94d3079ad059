-- Deploy flows:0006_code_health (the yoyo migration is the source)
BEGIN;
\ir ../../migrations/0006_code_health.sql
COMMIT;
