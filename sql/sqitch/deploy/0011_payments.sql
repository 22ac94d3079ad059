-- Deploy flows:0011_payments (the yoyo migration is the source)
BEGIN;
\ir ../../migrations/0011_payments.sql
COMMIT;
