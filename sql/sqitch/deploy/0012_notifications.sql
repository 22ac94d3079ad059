-- Deploy flows:0012_notifications (the yoyo migration is the source)
BEGIN;
\ir ../../migrations/0012_notifications.sql
COMMIT;
