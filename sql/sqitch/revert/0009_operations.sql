-- Revert flows:0009_operations (the yoyo rollback is the source)
BEGIN;
\ir ../../migrations/0009_operations.rollback.sql
COMMIT;
