-- Revert flows:0018_realtime_visibility (the yoyo rollback is the source)
BEGIN;
\ir ../../migrations/0018_realtime_visibility.rollback.sql
COMMIT;
