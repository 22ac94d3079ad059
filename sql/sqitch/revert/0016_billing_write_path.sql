-- Revert flows:0016_billing_write_path (the yoyo rollback is the source)
BEGIN;
\ir ../../migrations/0016_billing_write_path.rollback.sql
COMMIT;
