-- Deploy flows:0014_bank (the yoyo migration is the source)
BEGIN;
\ir ../../migrations/0014_bank.sql
COMMIT;
