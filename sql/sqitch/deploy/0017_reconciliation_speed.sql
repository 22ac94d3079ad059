-- Deploy flows:0017_reconciliation_speed (the yoyo migration is the source)
BEGIN;
\ir ../../migrations/0017_reconciliation_speed.sql
COMMIT;
