-- Revert flows:0020_reconciliation_speed (the yoyo rollback is the source)
BEGIN;
\ir ../../migrations/0020_reconciliation_speed.rollback.sql
COMMIT;
