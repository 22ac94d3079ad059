-- Revert flows:0001_foundation (the yoyo rollback is the source)
BEGIN;
\ir ../../migrations/0001_foundation.rollback.sql
COMMIT;
