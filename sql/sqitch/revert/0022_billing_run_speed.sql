-- Revert flows:0022_billing_run_speed (the yoyo rollback is the source)
BEGIN;
\ir ../../migrations/0022_billing_run_speed.rollback.sql
COMMIT;
