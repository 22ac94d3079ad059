-- Revert flows:0023_sync_speed (the yoyo rollback is the source)
BEGIN;
\ir ../../migrations/0023_sync_speed.rollback.sql
COMMIT;
