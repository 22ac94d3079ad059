-- Deploy flows:0018_realtime_visibility (the yoyo migration is the source)
BEGIN;
\ir ../../migrations/0018_realtime_visibility.sql
COMMIT;
