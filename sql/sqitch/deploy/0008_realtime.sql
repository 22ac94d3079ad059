-- Deploy flows:0008_realtime (the yoyo migration is the source)
BEGIN;
\ir ../../migrations/0008_realtime.sql
COMMIT;
