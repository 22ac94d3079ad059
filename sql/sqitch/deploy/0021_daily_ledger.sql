-- Deploy flows:0021_daily_ledger (the yoyo migration is the source)
BEGIN;
\ir ../../migrations/0021_daily_ledger.sql
COMMIT;
