-- Deploy flows:0023_ledger_day_appends (the yoyo migration is the source)
BEGIN;
\ir ../../migrations/0023_ledger_day_appends.sql
COMMIT;
