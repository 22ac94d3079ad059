-- Deploy flows:0022_billing_run_speed (the yoyo migration is the source)
BEGIN;
\ir ../../migrations/0022_billing_run_speed.sql
COMMIT;
