-- Revert flows:0014_bank (the yoyo rollback is the source)
BEGIN;
\ir ../../migrations/0014_bank.rollback.sql
COMMIT;
