-- Revert flows:0021_daily_ledger (the yoyo rollback is the source)
BEGIN;
\ir ../../migrations/0021_daily_ledger.rollback.sql
COMMIT;
