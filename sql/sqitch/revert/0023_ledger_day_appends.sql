-- Revert flows:0023_ledger_day_appends (the yoyo rollback is the source)
BEGIN;
\ir ../../migrations/0023_ledger_day_appends.rollback.sql
COMMIT;
