-- Revert flows:0008_realtime (the yoyo rollback is the source)
BEGIN;
\ir ../../migrations/0008_realtime.rollback.sql
COMMIT;
