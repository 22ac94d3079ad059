-- Revert flows:0015_reconciliation (the yoyo rollback is the source)
BEGIN;
\ir ../../migrations/0015_reconciliation.rollback.sql
COMMIT;
