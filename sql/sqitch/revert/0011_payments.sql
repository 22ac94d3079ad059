-- Revert flows:0011_payments (the yoyo rollback is the source)
BEGIN;
\ir ../../migrations/0011_payments.rollback.sql
COMMIT;
