-- Deploy flows:0007_billing (the yoyo migration is the source)
BEGIN;
\ir ../../migrations/0007_billing.sql
COMMIT;
