-- Revert flows:0007_billing (the yoyo rollback is the source)
BEGIN;
\ir ../../migrations/0007_billing.rollback.sql
COMMIT;
