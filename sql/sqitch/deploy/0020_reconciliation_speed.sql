-- Deploy flows:0020_reconciliation_speed (the yoyo migration is the source)
BEGIN;
\ir ../../migrations/0020_reconciliation_speed.sql
COMMIT;
