-- Revert flows:0012_notifications (the yoyo rollback is the source)
BEGIN;
\ir ../../migrations/0012_notifications.rollback.sql
COMMIT;
