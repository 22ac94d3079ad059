-- Revert flows:0017_reconciliation_speed (the yoyo rollback is the source)
BEGIN;
\ir ../../migrations/0017_reconciliation_speed.rollback.sql
COMMIT;
