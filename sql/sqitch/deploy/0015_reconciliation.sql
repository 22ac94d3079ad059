-- Deploy flows:0015_reconciliation (the yoyo migration is the source)
BEGIN;
\ir ../../migrations/0015_reconciliation.sql
COMMIT;
